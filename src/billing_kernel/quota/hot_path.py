"""The quota check's hot path: `POST /api/v1/billing/org/check` answered without FastAPI's
routing and dependency machinery (see `web/hot_path.py`), by the route's own `check_quota`
with the same authentication and org access."""

from __future__ import annotations

from typing import Any

from fastapi import Request, Response

from billing_kernel.quota.routes import CHECK_PATH, check_quota
from billing_kernel.quota.schemas import CheckIn
from billing_kernel.web.deps import authenticate, quota_access
from billing_kernel.web.hot_path import HotPath


class QuotaCheckHotPath(HotPath):
    path = CHECK_PATH
    model = CheckIn

    async def answer(self, request: Request, credentials: str, asked: Any) -> Response:
        principal = await authenticate(request, credentials)
        access = await quota_access(request, principal, request.headers.get("x-org-id"))
        carrier = Response()  # the headers the route sets, as FastAPI hands it one
        del carrier.headers["content-length"]
        decided = await check_quota(asked, access, carrier)
        answer = Response(decided.model_dump_json(), media_type="application/json")
        answer.raw_headers.extend(carrier.raw_headers)
        return answer
