"""Plan changes as the API shows them."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from billing_kernel.invoices.schemas import InvoiceLineOut
from billing_kernel.orgs.rules import BillingStatus
from billing_kernel.subscriptions.rules import ChangeKind, ScheduledChange
from billing_kernel.subscriptions.service.changes import PlanChange
from billing_kernel.web.schemas import MoneyText


class ScheduledChangeOut(BaseModel):
    plan_slug: str
    plan_version: int
    effective_at: datetime = Field(description="When it takes effect: the period's end.")
    requested_at: datetime

    @classmethod
    def of(cls, change: ScheduledChange) -> ScheduledChangeOut:
        return cls(
            plan_slug=change.plan_slug,
            plan_version=change.plan_version,
            effective_at=change.effective_at,
            requested_at=change.requested_at,
        )


class PlanChangePreviewOut(BaseModel):
    kind: ChangeKind = Field(
        description="`upgrade` (a higher monthly price: at once), `downgrade` (lower: at the "
        "period's end, unless BILLING_DOWNGRADE=immediate), `lateral` (the same price: at "
        "once), `none` (the plan and version it is on)."
    )
    from_plan: str
    from_version: int
    plan_slug: str
    plan_version: int
    effective_at: datetime
    scheduled: bool = Field(description="It takes effect later, at `effective_at`.")
    currency: str
    lines: list[InvoiceLineOut] = Field(
        description="Exactly the lines the change adds to the upcoming invoice: a credit for "
        "the rest of the period on the current plan and a charge for it on the new one, to "
        "the second (none for a scheduled change)."
    )
    upcoming_total_before: MoneyText = Field(description="The upcoming invoice's total now.")
    upcoming_total_after: MoneyText = Field(
        description="Its total after the change: with its lines, and the period's usage "
        "priced by the plan in force at the period's end."
    )
    preview_token: str = Field(
        description="What this preview priced, as a digest: confirm with it (and `at`) to "
        "make exactly this change, or be told it no longer holds."
    )

    @classmethod
    def of(cls, change: PlanChange) -> PlanChangePreviewOut:
        period = change.upcoming_after.period.label
        return cls(
            kind=change.kind,
            from_plan=change.current.slug,
            from_version=change.current.version,
            plan_slug=change.plan.slug,
            plan_version=change.plan.version,
            effective_at=change.effective_at,
            scheduled=change.scheduled,
            currency=change.upcoming_after.currency,
            lines=[InvoiceLineOut.of(n, line, period) for n, line in enumerate(change.lines, 1)],
            upcoming_total_before=change.upcoming_before.total,
            upcoming_total_after=change.upcoming_after.total,
            preview_token=change.token,
        )


class PlanChangeOut(PlanChangePreviewOut):
    org_id: str
    status: BillingStatus
    current_plan: str = Field(
        description="The plan the org is on now (the old one until a scheduled change takes "
        "effect)."
    )

    @classmethod
    def made(cls, change: PlanChange) -> PlanChangeOut:
        return cls(
            **PlanChangePreviewOut.of(change).model_dump(),
            org_id=change.state.org_id,
            status=change.state.status,
            current_plan=change.state.plan_slug,
        )


class ScheduledOut(BaseModel):
    scheduled: ScheduledChangeOut | None = Field(description="null: none.")
