"""What every response and request goes through before a route: a cap on request bodies,
security headers, and the cross-site check on writes authenticated by the cookie."""

from __future__ import annotations

from fastapi import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from billing_kernel.errors import Forbidden
from billing_kernel.web.problems import problem, sending_headers

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

PAGE_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
    "form-action 'self' https://checkout.stripe.com; frame-ancestors 'none'; base-uri 'none'"
)
"""The billing pages: no script at all, their own styles, forms only to the kernel (and on
to Stripe's Checkout, where "Update card" leads)."""
DOCS_POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'"
)
"""/docs and /redoc: Swagger UI's inline start-up script, every asset from the kernel."""
API_POLICY = "default-src 'none'; frame-ancestors 'none'"
"""JSON answers are never a page."""


def replaying(body: bytes, receive: Receive) -> Receive:
    """A `receive` that hands the app a body already read, then the connection's own
    messages (a disconnect)."""
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if replayed:
            return await receive()
        replayed = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


class BodyLimitMiddleware:
    """Refuse a request body over `max_bytes` with 413 before the app reads or parses any of
    it: by its Content-Length, or, sent without one, as soon as the bytes read pass it."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in UNSAFE_METHODS:
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        if declared is not None:
            await self.app(scope, receive, send)  # the server holds it to its length
            return
        # No length given (chunked): read it here, up to the limit, then hand it on.
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            if not message.get("more_body", False):
                break
        await self.app(scope, replaying(b"".join(chunks), receive), send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem(
            Request(scope),
            413,
            "payload_too_large",
            "Payload too large",
            f"the request body is larger than {self.max_bytes} bytes "
            "(BILLING_MAX_BODY_BYTES); nothing was read or written",
            headers={"Connection": "close"},
        )
        await response(scope, receive, send)


class NoNulMiddleware:
    """Refuse, with 400 before any route runs, a request whose path, query or a header holds
    a NUL character: no database column can store one (PostgreSQL refuses it outright), so
    no id, cursor or name may carry one. Bodies are held to the same rule field by field
    (`fields.check_storable`, `fields.canonical_properties`)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            where = _nul_in(scope)
            if where is not None:
                response = problem(
                    Request(scope),
                    400,
                    "bad_request",
                    "Bad request",
                    f"the {where} holds a NUL character (U+0000), which the kernel does not "
                    "take anywhere; nothing was read or written",
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _nul_in(scope: Scope) -> str | None:
    """Where in the request a NUL character is, if anywhere: the path, the query, or a
    header by name."""
    if "\x00" in scope["path"]:
        return "path"
    if b"%00" in scope["query_string"] or b"\x00" in scope["query_string"]:
        return "query"
    for name, value in scope["headers"]:
        if b"\x00" in value:
            return f"{name.decode('latin-1')} header"
    return None


class SecurityHeadersMiddleware:
    """Security headers on every response, with a Content-Security-Policy for what it is."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if path.startswith("/app/"):
            policy = PAGE_POLICY
        elif path in ("/docs", "/redoc", "/docs/oauth2-redirect"):
            policy = DOCS_POLICY
        else:
            policy = API_POLICY

        headers = [
            (b"content-security-policy", policy.encode()),
            (b"x-content-type-options", b"nosniff"),
            (b"x-frame-options", b"DENY"),
            (b"referrer-policy", b"same-origin"),
        ]
        await self.app(scope, receive, sending_headers(send, headers))


def require_same_origin(request: Request) -> None:
    """Forbidden unless a write authenticated by the cookie comes from the kernel's own
    pages. A browser sends the cookie with a cross-site form or fetch too (SameSite=Lax
    still lets a top-level POST from a same-site subdomain through), but it also says where
    the request comes from: `Sec-Fetch-Site`, and `Origin` on every POST."""
    if request.method not in UNSAFE_METHODS:
        return
    site = request.headers.get("sec-fetch-site")
    origin = request.headers.get("origin")
    own = f"{request.url.scheme}://{request.url.netloc}"
    if site in ("same-origin", "none") and (origin is None or origin == own):
        return
    if site is None and origin == own:
        return
    raise Forbidden(
        "a write authenticated by the cookie must come from the kernel's own pages "
        f"(Origin {origin or 'missing'}); a backend sends `Authorization: Bearer` instead"
    )
