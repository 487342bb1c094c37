"""How batches and quota calls reach the kernel: over HTTP (a kernel in the same process has
a transport of its own for batches, `billing_kernel.embedded`).

A transport sends a list of wire events and returns one status per event (`accepted`,
`duplicate` or `refused`), or raises TransportError. Tests may pass their own. A transport
that also has `request()` (the HTTP ones) serves the quota calls: checks, consumes and
reservations.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from billing_kernel_sdk._errors import TransportError

__all__ = [
    "CHECK_PATH",
    "EVENTS_PATH",
    "RESERVATIONS_PATH",
    "AsyncHttpTransport",
    "AsyncRequester",
    "AsyncTransport",
    "EventResult",
    "HttpTransport",
    "Request",
    "Requester",
    "Transport",
]
"""Public on purpose: a transport of one's own (the kernel's embedded client is one) builds
on `Request`, `EventResult` and the protocols."""

EVENTS_PATH = "/api/v1/usage/events"
CHECK_PATH = "/api/v1/billing/org/check"
RESERVATIONS_PATH = "/api/v1/usage/reservations"
ENTITLEMENTS_PATH = "/api/v1/billing/org/entitlements"
"""Where the SDK's requests go: a transport of one's own answers these paths."""


@dataclass(frozen=True, slots=True)
class EventResult:
    status: str
    """accepted, duplicate or refused"""
    error_code: str | None = None


class Transport(Protocol):
    def send(self, events: Sequence[dict[str, Any]]) -> list[EventResult]: ...

    def close(self) -> None: ...


class AsyncTransport(Protocol):
    async def send(self, events: Sequence[dict[str, Any]]) -> list[EventResult]: ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Request:
    """One quota call: `POST path` with a JSON body (or a `GET`, without one), for the org
    in `org_id` when the path does not name it."""

    path: str
    body: dict[str, Any]
    org_id: str | None = None
    method: str = "POST"

    def headers(self) -> dict[str, str]:
        return {"X-Org-Id": self.org_id} if self.org_id is not None else {}


class Requester(Protocol):
    def request(self, call: Request, timeout: float) -> dict[str, Any]: ...


class AsyncRequester(Protocol):
    async def request(self, call: Request, timeout: float) -> dict[str, Any]: ...


def _answer(response: httpx.Response) -> dict[str, Any]:
    """A quota call's JSON answer, or TransportError: retryable when the kernel may answer
    the same request later (429, 5xx), final for a 4xx that names what is wrong."""
    status = response.status_code
    if 200 <= status < 300:
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise TransportError("unreadable answer from the kernel", retryable=True, status=status)
        return answer
    try:
        problem = response.json()
    except ValueError:
        problem = None
    problem = problem if isinstance(problem, dict) else {}
    code = problem.get("code") if isinstance(problem.get("code"), str) else None
    detail = problem.get("detail") or response.text[:300]
    raise TransportError(
        f"kernel answered {status}: {detail}",
        retryable=status in (408, 425, 429) or status >= 500,
        status=status,
        code=code,
    )


def _results(response: httpx.Response, sent: int) -> list[EventResult]:
    """Per-event results from a response, or TransportError saying whether to retry."""
    status = response.status_code
    if status == 200:
        try:
            results = response.json()["results"]
            parsed = [EventResult(r["status"], (r.get("error") or {}).get("code")) for r in results]
        except (ValueError, KeyError, TypeError) as exc:
            raise TransportError(
                f"unreadable answer from the kernel: {exc}", retryable=True
            ) from None
        if len(parsed) != sent:
            raise TransportError(
                "the kernel answered for a different number of events", retryable=True
            )
        return parsed
    retry_after = None
    if "retry-after" in response.headers:
        try:
            retry_after = float(response.headers["retry-after"])
        except ValueError:
            retry_after = None
    detail = response.text[:300]
    # 401/403 are retried: the key may be fixed or the kernel restored; the events must wait.
    retryable = status in (401, 403, 408, 409, 425, 429) or status >= 500
    raise TransportError(
        f"kernel answered {status}: {detail}",
        retryable=retryable,
        retry_after=retry_after,
        status=status,
    )


_NETWORK_ERRORS = (httpx.TransportError,)


def _body(call: Request) -> dict[str, Any] | None:
    return None if call.method == "GET" else call.body


class HttpTransport:
    """Sends batches to a kernel's `POST /api/v1/usage/events` with a service API key."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 10.0,
        client: httpx.Client | None = None,
    ) -> None:
        self._client = client or httpx.Client(
            base_url=base_url,
            timeout=timeout,
            headers={"Authorization": f"Bearer {api_key}", "User-Agent": "billing-kernel-sdk"},
        )

    def send(self, events: Sequence[dict[str, Any]]) -> list[EventResult]:
        try:
            response = self._client.post(EVENTS_PATH, json={"events": list(events)})
        except _NETWORK_ERRORS as exc:
            raise TransportError(f"could not reach the kernel: {exc!r}", retryable=True) from None
        return _results(response, len(events))

    def request(self, call: Request, timeout: float) -> dict[str, Any]:
        try:
            response = self._client.request(
                call.method, call.path, json=_body(call), headers=call.headers(), timeout=timeout
            )
        except _NETWORK_ERRORS as exc:
            raise TransportError(f"could not reach the kernel: {exc!r}", retryable=True) from None
        return _answer(response)

    def close(self) -> None:
        self._client.close()


class AsyncHttpTransport:
    """The asyncio counterpart of HttpTransport."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 10.0,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self._client = client or httpx.AsyncClient(
            base_url=base_url,
            timeout=timeout,
            headers={"Authorization": f"Bearer {api_key}", "User-Agent": "billing-kernel-sdk"},
        )

    async def send(self, events: Sequence[dict[str, Any]]) -> list[EventResult]:
        try:
            response = await self._client.post(EVENTS_PATH, json={"events": list(events)})
        except _NETWORK_ERRORS as exc:
            raise TransportError(f"could not reach the kernel: {exc!r}", retryable=True) from None
        return _results(response, len(events))

    async def request(self, call: Request, timeout: float) -> dict[str, Any]:
        try:
            response = await self._client.request(
                call.method, call.path, json=_body(call), headers=call.headers(), timeout=timeout
            )
        except _NETWORK_ERRORS as exc:
            raise TransportError(f"could not reach the kernel: {exc!r}", retryable=True) from None
        return _answer(response)

    async def aclose(self) -> None:
        await self._client.aclose()
