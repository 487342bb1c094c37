"""POST /api/v1/billing/org/check: a quota decision for the current org."""

from __future__ import annotations

from billing_kernel.quota.schemas import CheckIn, CheckOut
from billing_kernel.web.deps import MemberAccess
from billing_kernel.web.problems import problem_responses
from billing_kernel.web.routers import billing_router

router = billing_router()


@router.post(
    "/org/check",
    operation_id="checkQuota",
    summary="Quota decision for the current org",
    responses=problem_responses(400, 403, 404),
)
async def check_quota(body: CheckIn, access: MemberAccess) -> CheckOut:
    """Whether the org may use `amount` more of `metric`. Limits are soft in this version:
    `allowed` is always true, and `soft_limit_exceeded` / `would_exceed` say where usage
    stands, `reason` why, and `message` the same in plain words for the person using the
    product. Members of the org, or service keys with `quota:check` or `billing:admin`."""
    return CheckOut.model_validate(
        await access.kernel.quota.check(access.org_id, body.metric, body.amount)
    )
