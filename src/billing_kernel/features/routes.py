"""Entitlements: an org's features and limits in one read, and its own feature values."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Response

from billing_kernel.features.rules import FEATURE_KEY_PATTERN
from billing_kernel.features.schemas import CACHE_SECONDS, EntitlementsOut, FeatureValueIn
from billing_kernel.web.deps import KernelDep, MemberAccess, OrgAdminOfPath, OrgId
from billing_kernel.web.problems import problem_responses
from billing_kernel.web.routers import billing_router, orgs_router

router = billing_router()
own_router = orgs_router()

FeatureKey = Annotated[
    str,
    Path(
        description="A feature's key, e.g. `sso`: 1 to 64 lowercase letters, digits and _, "
        "starting with a letter.",
        pattern=f"^{FEATURE_KEY_PATTERN.pattern}$",
    ),
]


@router.get(
    "/org/entitlements",
    operation_id="getOrgEntitlements",
    summary="Everything the current org may use: its features and limits",
    responses=problem_responses(403, 404),
)
async def org_entitlements(access: MemberAccess, response: Response) -> EntitlementsOut:
    """The org's features (its plan's, after its own values) and every metric's limit and
    policy, in one read, to keep for `cache_seconds` (`Cache-Control: private, max-age`).
    The org's billing state is created on first use (default plan, in trial). Members of
    the org, or service keys with `quota:check` or `billing:admin`."""
    response.headers["Cache-Control"] = f"private, max-age={CACHE_SECONDS}"
    return EntitlementsOut.of(await access.kernel.features.entitlements(access.org_id))


@own_router.put(
    "/{org_id}/features/{feature}",
    operation_id="putOrgFeature",
    summary="Give an org its own value of a feature",
    responses=problem_responses(403, 404),
)
async def put_feature(
    org_id: OrgId, feature: FeatureKey, body: FeatureValueIn, key: OrgAdminOfPath, kernel: KernelDep
) -> EntitlementsOut:
    """Replace the plan's value of the feature for this org (or grant one its plan does not);
    answers the org's entitlements after. Needs `billing:admin`."""
    return EntitlementsOut.of(await kernel.features.set_own_value(org_id, feature, body.value))


@own_router.delete(
    "/{org_id}/features/{feature}",
    operation_id="deleteOrgFeature",
    summary="Return an org to its plan's value of a feature",
    responses=problem_responses(403, 404),
)
async def delete_feature(
    org_id: OrgId, feature: FeatureKey, key: OrgAdminOfPath, kernel: KernelDep
) -> EntitlementsOut:
    """Drop the org's own value of the feature; answers its entitlements after. Idempotent.
    Needs `billing:admin`."""
    return EntitlementsOut.of(await kernel.features.clear_own_value(org_id, feature))
