"""`/api/v1/billing/org/plan...`: the current org's plan changes, previewed to the cent,
made, and (a downgrade at the period's end) canceled."""

from __future__ import annotations

from billing_kernel.orgs.schemas import PlanChangeConfirmIn, PlanChangeIn
from billing_kernel.subscriptions.schemas import (
    PlanChangeOut,
    PlanChangePreviewOut,
    ScheduledChangeOut,
    ScheduledOut,
)
from billing_kernel.web.deps import AdminAccess
from billing_kernel.web.problems import problem_responses
from billing_kernel.web.routers import billing_router

router = billing_router()


@router.post(
    "/org/plan/preview",
    operation_id="previewPlanChange",
    summary="What moving the current org to another plan would bill",
    responses=problem_responses(400, 403, 404, 409),
)
async def preview_plan_change(body: PlanChangeIn, access: AdminAccess) -> PlanChangePreviewOut:
    """Exactly the lines the change would add to the upcoming invoice now (to the second: a
    credit for the rest of the period on the current plan, a charge on the new one), when
    it takes effect, and the upcoming invoice's total before and after. `changeOrgPlan` at
    the same moment makes the same lines. Nothing is written. Owners and admins of the org,
    or service keys with `billing:admin`; a private plan only by a key (409
    `plan_not_offered` for people)."""
    return PlanChangePreviewOut.of(
        await access.kernel.plan_changes.preview(
            access.org_id, body.plan_slug, offered_only=access.role is not None
        )
    )


@router.post(
    "/org/plan",
    operation_id="changeOrgPlan",
    summary="Move the current org to another plan",
    responses=problem_responses(400, 403, 404, 409),
)
async def change_plan(body: PlanChangeConfirmIn, access: AdminAccess) -> PlanChangeOut:
    """An upgrade (or a move at the same price) takes effect at once, and its proration
    lines go on the upcoming invoice: with the preview's `at` and `preview_token`, exactly
    those `previewPlanChange` gave, to the cent, or 409 `preview_stale` when anything it
    priced has changed since; a downgrade takes effect at the period's end as a scheduled
    change (`current_plan` stays until then; cancel it with `DELETE
    /billing/org/plan/scheduled`), or at once with a credit when BILLING_DOWNGRADE=immediate.
    The plan the org is on changes nothing (a scheduled change stays). Confirmations of one
    org are made one at a time: of several confirmations of one preview, one makes the
    change and the others are 409 `preview_stale`. Owners and admins of the org, or service
    keys with `billing:admin`. An unknown plan is 404 `plan_not_found`; a withdrawn one is
    409 `plan_inactive`; a private one, asked for by a person rather than a key, 409
    `plan_not_offered`; one in another currency, for an org billed this period, 409
    `currency_change`."""
    return PlanChangeOut.made(
        await access.kernel.plan_changes.change(
            access.org_id,
            body.plan_slug,
            at=body.at,
            token=body.preview_token,
            offered_only=access.role is not None,
        )
    )


@router.get(
    "/org/plan/scheduled",
    operation_id="getScheduledPlanChange",
    summary="The current org's scheduled plan change",
    responses=problem_responses(400, 403, 404),
)
async def scheduled_change(access: AdminAccess) -> ScheduledOut:
    """A downgrade waiting for the period's end, or null."""
    found = await access.kernel.subscriptions.scheduled_change(access.org_id)
    return ScheduledOut(scheduled=None if found is None else ScheduledChangeOut.of(found))


@router.delete(
    "/org/plan/scheduled",
    operation_id="cancelScheduledPlanChange",
    summary="Cancel the current org's scheduled plan change",
    responses=problem_responses(400, 403, 404),
)
async def cancel_scheduled_change(access: AdminAccess) -> ScheduledOut:
    """The org stays on its plan. Idempotent: answers `{"scheduled": null}`."""
    await access.kernel.subscriptions.cancel_scheduled(access.org_id)
    return ScheduledOut(scheduled=None)
