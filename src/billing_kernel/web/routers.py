"""The API's URL families, each served by one or more capabilities: one definition of each,
so their prefix, tag and common error answers agree."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from billing_kernel.web.problems import problem_responses


def billing_router() -> APIRouter:
    """`/api/v1/billing/...`: the seed's billing endpoints (plans, summary, plan change,
    quota check), for members of an org and for API keys."""
    return APIRouter(
        prefix="/api/v1/billing", tags=["billing"], responses=problem_responses(401, 422)
    )


def orgs_router() -> APIRouter:
    """`/api/v1/orgs/...`: orgs and members, pushed by the product's backend."""
    return APIRouter(
        prefix="/api/v1/orgs", tags=["orgs"], responses=problem_responses(401, 403, 404, 422)
    )


def usage_router() -> APIRouter:
    """`/api/v1/usage/...`: usage events and reservations, sent by the product's backend."""
    return APIRouter(prefix="/api/v1/usage", tags=["usage"])


def links_to(
    status: int, parameter: str, field: str, *operation_ids: str
) -> dict[int | str, dict[str, Any]]:
    """An OpenAPI `responses` entry whose `status` answer links to the operations that take
    its `field` as their `parameter`: what a generated client, and the fuzzer's stateful
    phase, follow from a create to what reads and changes it."""
    links = {
        operation_id: {
            "operationId": operation_id,
            "parameters": {parameter: f"$response.body#/{field}"},
        }
        for operation_id in operation_ids
    }
    return {status: {"links": links}}
