"""What every protocol's routes share: the caller's API key read the way that protocol's
client sends it, the JSON body read without FastAPI's own validation (whose 422 is the
kernel's shape, not the protocol's), and errors answered in the protocol's shape."""

from __future__ import annotations

import base64
import binascii
import functools
import json
from collections.abc import Awaitable, Callable, Collection
from typing import ParamSpec

from fastapi import APIRouter, Request, Response

from billing_kernel.auth.rules import ApiKeyCaller, Scope, looks_like_api_key
from billing_kernel.compat.rules import RefusedBatch
from billing_kernel.errors import BillingError, InvalidInput, NotFound, Unauthenticated
from billing_kernel.web.deps import READ_SCOPES, kernel_of, require_scope

WRITE_SCOPES = (Scope.USAGE_WRITE,)
__all__ = ["READ_SCOPES", "WRITE_SCOPES", "api_key", "first_error", "json_body", "speaking"]

Refusal = BillingError | RefusedBatch
"""What a protocol's error renderer answers: one error, or a refused batch."""

P = ParamSpec("P")


def speaking(
    render: Callable[[Refusal], Response],
) -> Callable[[Callable[P, Awaitable[Response]]], Callable[P, Awaitable[Response]]]:
    """A route whose kernel errors are answered by `render`, in its protocol's shape."""

    def decorate(route: Callable[P, Awaitable[Response]]) -> Callable[P, Awaitable[Response]]:
        @functools.wraps(route)
        async def answer(*args: P.args, **kwargs: P.kwargs) -> Response:
            try:
                return await route(*args, **kwargs)
            except (BillingError, RefusedBatch) as exc:
                return render(exc)

        return answer

    return decorate


def answer_unrecognized_calls(
    router: APIRouter, render: Callable[[Refusal], Response], served: str
) -> None:
    """Route every other call under `router` (add it after the protocol's routes) to the
    protocol's own 404, as its incumbent answers a URL it does not know, so that its clients
    raise their typed error. `served`: what the kernel serves of the protocol, for the
    message."""

    @router.api_route("/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
    @speaking(render)
    async def unrecognized(request: Request, path: str) -> Response:
        raise NotFound(
            f"Unrecognized request URL ({request.method}: {request.url.path}): the kernel "
            f"serves only {served} of this API"
        )


async def api_key(
    request: Request, scopes: Collection[Scope], *, basic: bool = False
) -> ApiKeyCaller:
    """The calling service, by the kernel API key in `Authorization: Bearer <key>` (or, with
    `basic`, as the Basic user name, as `curl -u key:` sends it), if it has one of `scopes`."""
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    token = credentials.strip() if scheme.lower() == "bearer" else ""
    if basic and scheme.lower() == "basic":
        try:
            token = base64.b64decode(credentials.strip(), validate=True).decode().split(":")[0]
        except (binascii.Error, UnicodeDecodeError):
            token = ""
    if not token:
        raise Unauthenticated("send a billing-kernel API key as `Authorization: Bearer <key>`")
    if not looks_like_api_key(token):
        raise Unauthenticated("the key is not a billing-kernel API key (`bk_...`)")
    caller = await kernel_of(request).api_keys.authenticate(token)
    require_scope(caller, scopes)
    return caller


async def json_body(request: Request) -> object:
    """The request body parsed as JSON, or InvalidInput."""
    try:
        return json.loads(await request.body())
    except (ValueError, UnicodeDecodeError):
        raise InvalidInput("the body is not valid JSON", field="body") from None


def first_error(refusal: Refusal) -> BillingError:
    """The error a protocol that answers one error per request reports."""
    return refusal.first if isinstance(refusal, RefusedBatch) else refusal
