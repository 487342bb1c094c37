"""The API's URL families, each served by one or more capabilities: one definition of each,
so their prefix, tag and common error answers agree."""

from __future__ import annotations

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
