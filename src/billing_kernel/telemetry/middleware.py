"""The outermost layer of the API: every answer counted and timed for `/metrics` (by its
route's template, never its raw path: an id in a path must not make a series of its own), and,
with BILLING_LOG_FORMAT=json, logged as one line."""

from __future__ import annotations

import logging
import time
from collections.abc import Collection

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from billing_kernel.telemetry.instruments import LATENCY, REQUESTS
from billing_kernel.telemetry.logs import REQUEST_LOGGER
from billing_kernel.telemetry.tracing import Tracing

UNMATCHED = "unmatched"
"""The route of a request no route answered (a 404 of an unknown path)."""

logger = logging.getLogger(REQUEST_LOGGER)


def route_of(scope: Scope, known: Collection[str]) -> str:
    """The template of the route that answered (`/api/v1/orgs/{org_id}`), a known path answered
    before routing (the hot paths), or UNMATCHED."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str):
        return path
    return scope["path"] if scope.get("path") in known else UNMATCHED


class TelemetryMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        known_paths: Collection[str],
        log_requests: bool,
        tracing: Tracing | None = None,
    ) -> None:
        self.app = app
        self.known = frozenset(known_paths)
        self.log_requests = log_requests
        self.tracing = tracing

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.tracing is None:
            await self._measured(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        with self.tracing.request(scope["method"], scope["path"], headers) as span:
            status = 500  # unless answered: the app failed (the span records why)
            try:
                status = await self._measured(scope, receive, send)
            finally:  # named by the route, never by a raw path with its ids
                self.tracing.answered(span, scope["method"], route_of(scope, self.known), status)

    async def _measured(self, scope: Scope, receive: Receive, send: Send) -> int:
        """Answer, counting and timing the answer (and logging it); its status."""
        started = time.perf_counter()
        status = 500  # unless an answer began: the client left, or the app failed

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            seconds = time.perf_counter() - started
            route, method = route_of(scope, self.known), scope["method"]
            REQUESTS.labels(route, method, str(status)).inc()
            LATENCY.labels(route, method).observe(seconds)
            if self.log_requests:
                state = scope.get("state") or {}
                logger.info(
                    "%s %s %d",
                    method,
                    route,
                    status,
                    extra={
                        "request_id": state.get("request_id"),
                        "method": method,
                        "path": scope["path"],
                        "route": route,
                        "status": status,
                        "duration_ms": round(seconds * 1000, 3),
                        "org_id": state.get("org_id")
                        or (scope.get("path_params") or {}).get("org_id"),
                        "caller": state.get("caller"),
                    },
                )
        return status
