"""A lean HTTP/1.1 load generator: keep-alive connections over asyncio streams, bodies encoded
before the clock starts.

A general-purpose client (httpx) spends about a millisecond of CPU per request on this
machine, as much as the kernel itself; with the generator on the same two cores as the server
and PostgreSQL, it would measure the generator. This client does only what the benchmarks
need: fixed headers, a Content-Length body, and a Content-Length answer.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def exchange(self, request: bytes) -> Answer:
        self.writer.write(request)
        status_line = await self.reader.readuntil(b"\r\n")
        length = None
        while (line := await self.reader.readuntil(b"\r\n")) != b"\r\n":
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        status = int(status_line.split()[1])
        if status in (204, 304):  # no body, by definition
            return Answer(status, b"")
        if length is None:
            raise RuntimeError("the answer has no Content-Length")
        return Answer(status, await self.reader.readexactly(length))


class LoadClient:
    """`size` keep-alive connections to one server; each request borrows one."""

    def __init__(self, base_url: str, headers: dict[str, str], size: int) -> None:
        parts = urlsplit(base_url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.headers = headers
        self.size = size
        self._idle: asyncio.Queue[_Connection] = asyncio.Queue()

    async def __aenter__(self) -> LoadClient:
        for _ in range(self.size):
            self._idle.put_nowait(_Connection(*await asyncio.open_connection(self.host, self.port)))
        return self

    async def __aexit__(self, *exc: object) -> None:
        while not self._idle.empty():
            self._idle.get_nowait().writer.close()

    def encode(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        content: bytes | None = None,
    ) -> bytes:
        """The request's bytes: encode once, send many times. `body` is sent as JSON;
        `content` as it is (its type in `headers`)."""
        payload = content if content is not None else b""
        if body is not None:
            payload = json.dumps(body).encode()
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        lines += [f"{k}: {v}" for k, v in (self.headers | (headers or {})).items()]
        if body is not None:
            lines.append("Content-Type: application/json")
        lines.append(f"Content-Length: {len(payload)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + payload

    async def send(self, request: bytes) -> Answer:
        connection = await self._idle.get()
        try:
            answer = await connection.exchange(request)
        except BaseException:
            connection.writer.close()  # its state is unknown: never reused (the run fails)
            raise
        self._idle.put_nowait(connection)
        return answer

    async def call(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> Answer:
        return await self.send(self.encode(method, path, body, headers))
