"""Hot paths: one route's common request answered without FastAPI's routing and dependency
machinery, which cost about as much as the work behind a small request.

A hot path answers only the common request, a well-formed JSON body with a bearer
credential, and runs the route's own code with the same authentication and access checks.
Any other request (a body that does not validate, no `Authorization` header, a cookie) goes
to the FastAPI route unchanged, which answers it as it answers everything: one behaviour,
one error model, one OpenAPI description."""

from __future__ import annotations

from typing import Any, ClassVar

from fastapi import Request, Response
from fastapi.security.utils import get_authorization_scheme_param
from pydantic import BaseModel, ValidationError
from starlette.types import ASGIApp, Receive, Scope, Send

from billing_kernel.errors import BillingError
from billing_kernel.web.guards import replaying
from billing_kernel.web.problems import billing_problem, unexpected_problem


class HotPath:
    """ASGI middleware: the hot path for `POST {path}` (a body of `model`), answered by
    `answer`; everything else passed on."""

    path: ClassVar[str]
    model: ClassVar[type[BaseModel]]

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def answer(self, request: Request, credentials: str, asked: Any) -> Response:
        """The route's answer to `asked`, from the caller `credentials` name."""
        raise NotImplementedError

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != self.path or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        body = await request.body()
        scheme, credentials = get_authorization_scheme_param(request.headers.get("authorization"))
        asked = self._parsed(body) if scheme.lower() == "bearer" and credentials else None
        if asked is None or not _is_json(request.headers.get("content-type")):
            await self.app(scope, replaying(body, receive), send)
            return
        try:
            answer = await self.answer(request, credentials, asked)
        except BillingError as exc:
            answer = await billing_problem(request, exc)
        except Exception as exc:  # as the route's own handler answers it: a 500 problem
            answer = await unexpected_problem(request, exc)
        await answer(scope, receive, send)

    def _parsed(self, body: bytes) -> BaseModel | None:
        try:
            return self.model.model_validate_json(body)
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
