"""Quota decisions (`POST /api/v1/billing/org/check`) and an org's own terms
(`/api/v1/orgs/{org_id}/limits`)."""

from __future__ import annotations

from fastapi import Response

from billing_kernel.auth.rules import Scope
from billing_kernel.quota.schemas import (
    CheckIn,
    CheckOut,
    LimitIn,
    LimitsOut,
    TermsOut,
)
from billing_kernel.web.deps import (
    READ_SCOPES,
    KernelDep,
    MetricKey,
    OrgAdminOfPath,
    OrgId,
    QuotaAccess,
    require_access,
)
from billing_kernel.web.problems import problem_responses
from billing_kernel.web.routers import billing_router, orgs_router

REPLAYED_HEADER = "Idempotent-Replayed"
"""Set to `true` on the answer to a retried consume: the decision first made for its key."""

router = billing_router()
CHECK_PATH = f"{router.prefix}/org/check"
limits_router = orgs_router()


@router.post(
    "/org/check",
    operation_id="checkQuota",
    summary="Quota decision for the current org, and atomic consume",
    responses=problem_responses(400, 403, 404, 409, 422),
)
async def check_quota(body: CheckIn, access: QuotaAccess, response: Response) -> CheckOut:
    """Whether the org may use `amount` more of `metric` now: `allowed`, `reason` why, and
    `message` the same in plain words for the person using the product. A soft limit never
    refuses; a hard one refuses usage beyond it and its grace; a canceled org, or one past
    due for longer than its grace, is refused everything. A refusal is this same answer
    (200, `allowed: false`), with an `upgrade` that would allow it when there is one. The
    check reads the org's usage as it is now, the caller's own last writes included.
    Members of the org, or service keys with `quota:check` or `billing:admin`.

    With `"consume": true` and an `idempotency_key`, an allowed decision also records the
    amount as a usage event, in one atomic step: of concurrent consumes that together ask
    for more than is left, only as many as fit are allowed. A retry with the same key gets
    the first answer (with the `Idempotent-Replayed: true` header) and counts nothing more.
    Service keys with `usage:write`."""
    if body.consume:
        assert body.idempotency_key is not None  # the body's validator sees to it
        require_access(access, "consuming usage", (Scope.USAGE_WRITE,), members=False)
        consumption = await access.kernel.quota.consume(
            access.org_id, body.metric, body.amount, idempotency_key=body.idempotency_key
        )
        if consumption.replayed:
            response.headers[REPLAYED_HEADER] = "true"
        decision = consumption.decision
        return CheckOut.of(decision, consumed=decision.allowed)
    require_access(access, "a quota check", READ_SCOPES, members=True)
    return CheckOut.of(await access.kernel.quota.check(access.org_id, body.metric, body.amount))


@limits_router.get(
    "/{org_id}/limits", operation_id="getOrgLimits", summary="An org's terms for every metric"
)
async def get_limits(org_id: OrgId, key: OrgAdminOfPath, kernel: KernelDep) -> LimitsOut:
    """Each metric's limit and policy for the org: its plan's, with the parts its own
    override sets replaced. Needs `billing:admin`."""
    return await _limits(org_id, kernel)


@limits_router.put(
    "/{org_id}/limits/{metric}",
    operation_id="putOrgLimit",
    summary="Give an org its own terms for a metric",
)
async def put_limit(
    org_id: OrgId, metric: MetricKey, body: LimitIn, key: OrgAdminOfPath, kernel: KernelDep
) -> TermsOut:
    """Replace parts of the plan's terms for this org: any of `included_quantity` (null:
    unlimited), `mode`, `grace_percent`, `grace_period_hours` (null: no time limit). Parts
    left out follow the plan, and its later changes. Replaces the org's earlier override
    of the metric. Decisions follow at once. Needs `billing:admin`."""
    override = body.override()
    terms = await kernel.quota.set_override(org_id, metric, override)
    return TermsOut.of(metric, terms, override)


@limits_router.delete(
    "/{org_id}/limits/{metric}",
    operation_id="deleteOrgLimit",
    summary="Return an org to its plan's terms for a metric",
)
async def delete_limit(
    org_id: OrgId, metric: MetricKey, key: OrgAdminOfPath, kernel: KernelDep
) -> TermsOut:
    """Drop the org's override of the metric; answers the plan's terms, now the org's.
    Idempotent. Needs `billing:admin`."""
    return TermsOut.of(metric, await kernel.quota.clear_override(org_id, metric), None)


async def _limits(org_id: str, kernel: KernelDep) -> LimitsOut:
    terms = await kernel.quota.terms(org_id)
    overrides = await kernel.quota.overrides(org_id)
    return LimitsOut(
        org_id=org_id,
        limits=[TermsOut.of(metric, t, overrides.get(metric)) for metric, t in terms.items()],
    )
