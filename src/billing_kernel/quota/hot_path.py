"""The quota check's hot path: `POST /api/v1/billing/org/check` answered without FastAPI's
routing and dependency machinery, which cost about as much as the decision itself.

It answers only the common request, a well-formed JSON body with a bearer credential, and
runs the route's own code (`check_quota`) with the same authentication and org access. Any
other request (a body that does not validate, no `Authorization` header, a cookie) goes to
the FastAPI route unchanged, which answers it as it answers everything: one behaviour, one
error model, one OpenAPI description."""

from __future__ import annotations

from fastapi import Request, Response
from fastapi.security.utils import get_authorization_scheme_param
from pydantic import ValidationError
from starlette.types import ASGIApp, Receive, Scope, Send

from billing_kernel.errors import BillingError
from billing_kernel.quota.routes import CHECK_PATH, check_quota
from billing_kernel.quota.schemas import CheckIn
from billing_kernel.web.deps import authenticate, quota_access
from billing_kernel.web.guards import replaying
from billing_kernel.web.problems import billing_problem, unexpected_problem


class QuotaCheckHotPath:
    """ASGI middleware: the hot path for `POST {CHECK_PATH}`, everything else passed on."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != CHECK_PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        body = await request.body()
        scheme, credentials = get_authorization_scheme_param(request.headers.get("authorization"))
        asked = _parsed(body) if scheme.lower() == "bearer" and credentials else None
        if asked is None or not _is_json(request.headers.get("content-type")):
            await self.app(scope, replaying(body, receive), send)
            return
        try:
            principal = await authenticate(request, credentials)
            access = await quota_access(request, principal, request.headers.get("x-org-id"))
            carrier = Response()  # the headers the route sets, as FastAPI hands it one
            del carrier.headers["content-length"]
            decided = await check_quota(asked, access, carrier)
            answer = Response(decided.model_dump_json(), media_type="application/json")
            answer.raw_headers.extend(carrier.raw_headers)
        except BillingError as exc:
            answer = await billing_problem(request, exc)
        except Exception as exc:  # as the route's own handler answers it: a 500 problem
            answer = await unexpected_problem(request, exc)
        await answer(scope, receive, send)


def _parsed(body: bytes) -> CheckIn | None:
    try:
        return CheckIn.model_validate_json(body)
    except ValidationError:
        return None


def _is_json(content_type: str | None) -> bool:
    """As FastAPI reads a JSON body: no content type, or `application/json` (or `+json`)."""
    if content_type is None:
        return True
    main = content_type.split(";", 1)[0].strip().lower()
    return main == "application/json" or (
        main.startswith("application/") and main.endswith("+json")
    )
