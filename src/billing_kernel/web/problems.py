"""One error model for every response: RFC 9457 problem details with a stable `code`."""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from billing_kernel.errors import BillingError
from billing_kernel.web.responses import EscapedJSONResponse

logger = logging.getLogger("billing_kernel.api")

PROBLEM_JSON = "application/problem+json"
REQUEST_ID_HEADER = "X-Request-Id"


class FieldProblem(BaseModel):
    location: str = Field(description="Where the bad value is, e.g. `body.events.3.quantity`.")
    message: str


class Problem(BaseModel):
    """An RFC 9457 problem: what went wrong, for people (`title`, `detail`) and for code
    (`code`, stable across versions)."""

    type: str = Field(description="A URI naming the kind of problem: `urn:billing-kernel:<code>`.")
    title: str
    status: int
    detail: str
    code: str = Field(description="Stable machine-readable error code.")
    instance: str = Field(description="The request path.")
    request_id: str = Field(description="Quote it when reporting a problem; it is in the logs.")
    errors: list[FieldProblem] | None = Field(
        default=None, description="Each invalid field, for validation errors."
    )


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries documenting problem-details answers."""
    content = {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    return {
        status: {"model": Problem, "content": content, "description": _DESCRIPTIONS[status]}
        for status in statuses
    }


_DESCRIPTIONS = {
    400: "Bad request: the org is not named (`org_required`), or the body is not parseable.",
    401: "No credentials, or credentials that do not verify (`unauthenticated`).",
    403: "The caller may not do this (`forbidden`).",
    404: "Not found; also the answer for an org the caller is not a member of.",
    409: "Conflicts with the current state (`plan_inactive`, `idempotency_conflict`, "
    "`reservation_settled`).",
    422: "Invalid request: each bad field is listed in `errors`.",
    500: "The kernel failed; quote `request_id`.",
    502: "Stripe refused the kernel's call (`stripe_refused`): its words are in `detail`.",
    503: "Momentarily unavailable (`database_unavailable`, `not_ready`, `stripe_unavailable`): "
    "retry after "
    "`Retry-After` seconds; nothing was written.",
}


def problem(
    request: Request,
    status: int,
    code: str,
    title: str,
    detail: str,
    errors: list[FieldProblem] | None = None,
    headers: Mapping[str, str] | None = None,
) -> EscapedJSONResponse:
    body = Problem(
        type=f"urn:billing-kernel:{code}",
        title=title,
        status=status,
        detail=detail,
        code=code,
        instance=request.url.path,
        request_id=request_id_of(request),
        errors=errors,
    )
    # Set here too: a 500 is sent from outside RequestIdMiddleware.
    headers = {**(headers or {}), REQUEST_ID_HEADER: body.request_id}
    return EscapedJSONResponse(  # a detail may quote what the caller sent
        body.model_dump(exclude_none=True),
        status_code=status,
        media_type=PROBLEM_JSON,
        headers=headers,
    )


def request_id_of(request: Request) -> str:
    return str(request.scope.get("state", {}).get("request_id", "")) or "unknown"


async def billing_problem(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, BillingError)
    errors = None
    if "field" in exc.details:
        errors = [FieldProblem(location=str(exc.details["field"]), message=exc.message)]
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    if exc.status == 503:
        headers = {"Retry-After": "1"}
    return problem(request, exc.status, exc.code, exc.title, exc.message, errors, headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        FieldProblem(location=".".join(str(p) for p in error["loc"]), message=error["msg"])
        for error in exc.errors()
    ]
    summary = "; ".join(f"{e.location}: {e.message}" for e in errors[:5])
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return problem(
        request,
        422,
        "invalid_request",
        "Invalid request",
        f"the request is not valid: {summary}{more}",
        errors,
    )


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    codes = {400: "bad_request", 404: "not_found", 405: "method_not_allowed"}
    headers = dict(exc.headers or {})
    if exc.status_code == 405:  # Starlette names only the first route's methods for a path
        headers["Allow"] = ", ".join(sorted(_allowed_methods(request)))
    return problem(
        request,
        exc.status_code,
        codes.get(exc.status_code, "http_error"),
        str(exc.detail),
        str(exc.detail),
        headers=headers,
    )


def _allowed_methods(request: Request) -> set[str]:
    methods: set[str] = set()
    for route in request.app.router.routes:
        if isinstance(route, APIRoute) and route.matches(request.scope)[0] is not Match.NONE:
            methods |= route.methods or set()
    return methods


async def unexpected_problem(request: Request, exc: Exception) -> JSONResponse:
    logger.exception(
        "request %s failed: %s %s", request_id_of(request), request.method, request.url.path
    )
    return problem(
        request,
        500,
        "internal_error",
        "Internal error",
        "the kernel failed to answer; the request id is in its logs",
    )


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(BillingError, billing_problem)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, unexpected_problem)


class ClientGoneMiddleware:
    """A client that disconnects before its request is read is not a fault of the kernel:
    logged at debug level, not as an error with a traceback (nothing can be answered)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.app(scope, receive, send)
        except ClientDisconnect:
            logger.debug(
                "the client went away before its request was read: %s %s",
                scope.get("method"),
                scope.get("path"),
            )


TRACEPARENT = re.compile(rb"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")
"""A W3C `traceparent` header: version, trace id, parent id, flags."""


class RequestIdMiddleware:
    """Gives each request an id (the caller's `X-Request-Id` if sane, else the trace id of
    its W3C `traceparent`, else a new one) and returns it in the response's `X-Request-Id`
    header; problem bodies and the request's log line carry it too."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        given = headers.get(REQUEST_ID_HEADER.lower().encode(), b"").decode("latin-1")
        trace = TRACEPARENT.match(headers.get(b"traceparent", b"").strip().lower())
        if 0 < len(given) <= 128 and given.isprintable():
            request_id = given
        elif trace is not None and trace[1] != b"0" * 32:  # all zeros: not a trace id
            request_id = trace[1].decode()
        else:
            request_id = uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        header = (REQUEST_ID_HEADER.lower().encode(), request_id.encode())
        await self.app(scope, receive, sending_headers(send, [header]))


def sending_headers(send: Send, extra: Sequence[tuple[bytes, bytes]]) -> Send:
    """`send`, adding the `extra` headers (lower-case names) to the response unless it
    already has them."""

    async def send_with_headers(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", []))
            present = {name.lower() for name, _ in headers}
            headers += [(name, value) for name, value in extra if name not in present]
            message["headers"] = headers
        await send(message)

    return send_with_headers
