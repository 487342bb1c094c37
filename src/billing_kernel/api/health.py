"""Liveness and readiness, for load balancers and orchestrators."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel

from billing_kernel.db.migrate import schema_is_current
from billing_kernel.errors import BillingError
from billing_kernel.web.problems import problem_responses


class HealthOut(BaseModel):
    status: str


router = APIRouter(tags=["health"])


class NotReady(BillingError):
    status = 503
    code = "not_ready"
    title = "Not ready"


@router.get("/healthz", operation_id="getHealth", summary="The process is up")
async def healthz() -> HealthOut:
    return HealthOut(status="ok")


@router.get(
    "/readyz",
    operation_id="getReadiness",
    summary="The database answers and is migrated",
    responses=problem_responses(503),
)
async def readyz(request: Request) -> HealthOut:
    if not await schema_is_current(request.app.state.database, request.app.state.schema_head):
        raise NotReady(
            "the database is unreachable or its schema is not at the newest "
            "version (run `billing-kernel migrate`)"
        )
    return HealthOut(status="ready")
