"""An HTTP proxy in front of the kernel (or of a Stripe-compatible server) that fails on
purpose: 500s, 429s, and answers lost after the server has committed (the connection is cut
before the response)."""

from __future__ import annotations

import asyncio
import random
import threading

import httpx

from tests.live import free_port


class FaultyProxy:
    def __init__(
        self,
        upstream: str,
        *,
        error_500: float = 0.0,
        error_429: float = 0.0,
        drop_after_commit: float = 0.0,
        drop_once: str | None = None,
        seed: int = 7,
    ) -> None:
        """`drop_once`: a `METHOD /path` whose first answer is lost (the request is made)."""
        self.drop_once = drop_once
        self.upstream = upstream
        self.rates = (error_500, error_429, drop_after_commit)
        self.seen = {"500": 0, "429": 0, "dropped": 0, "forwarded": 0}
        self.requests: list[str] = []
        """Every request that came, as `METHOD /path` (without its query)."""
        self._random = random.Random(seed)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        self._started.wait(10)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._client = httpx.AsyncClient(base_url=self.upstream, timeout=30)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._handle, "127.0.0.1", self.port)
        )
        self._started.set()
        self._loop.run_forever()
        self._loop.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
                method, path, _ = head[0].split(" ", 2)
                headers = dict(line.split(": ", 1) for line in head[1:] if ": " in line)
                length = int(
                    next((v for k, v in headers.items() if k.lower() == "content-length"), "0")
                )
                body = await reader.readexactly(length)
                self.requests.append(f"{method} {path.split('?', 1)[0]}")
                fate = self._random.random()
                error_500, error_429, drop = self.rates
                if fate < error_500:
                    self.seen["500"] += 1
                    await self._respond(writer, 500, b'{"code":"internal_error"}')
                    continue
                if fate < error_500 + error_429:
                    self.seen["429"] += 1
                    await self._respond(
                        writer, 429, b'{"code":"rate_limited"}', b"Retry-After: 0\r\n"
                    )
                    continue
                forwarded = {
                    k: v
                    for k, v in headers.items()
                    if k.lower() in ("authorization", "content-type", "x-org-id", "idempotency-key")
                }
                answer = await self._client.request(method, path, content=body, headers=forwarded)
                once = self.drop_once is not None and f"{method} {path}" == self.drop_once
                if once:
                    self.drop_once = None
                if once or fate < error_500 + error_429 + drop:
                    self.seen["dropped"] += 1  # committed by the kernel; the answer is lost
                    return
                self.seen["forwarded"] += 1
                await self._respond(writer, answer.status_code, answer.content)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    @staticmethod
    async def _respond(
        writer: asyncio.StreamWriter, status: int, body: bytes, extra: bytes = b""
    ) -> None:
        writer.write(
            b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n%s\r\n%s" % (status, len(body), extra, body)
        )
        await writer.drain()

    async def _shutdown(self) -> None:
        self._server.close()
        current = asyncio.current_task()
        tasks = [t for t in asyncio.all_tasks() if t is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._client.aclose()

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
