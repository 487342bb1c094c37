"""Ingestion's hot path: `POST /api/v1/usage/events` answered without FastAPI's routing and
dependency machinery (see `web/hot_path.py`), by the route's own `ingest_events` with the
same key check; the body parsed straight from JSON by its model."""

from __future__ import annotations

from typing import Any

from fastapi import Request, Response

from billing_kernel.usage.routes import INGEST_PATH, ingest_events
from billing_kernel.usage.schemas import UsageBatchIn
from billing_kernel.web.deps import authenticate, kernel_of, usage_writer
from billing_kernel.web.hot_path import HotPath


class IngestHotPath(HotPath):
    path = INGEST_PATH
    model = UsageBatchIn

    async def answer(self, request: Request, credentials: str, asked: Any) -> Response:
        key = await usage_writer(await authenticate(request, credentials))
        return await ingest_events(asked, key, kernel_of(request))
