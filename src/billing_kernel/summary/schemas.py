"""The org billing summary as the API shows it."""

from __future__ import annotations

from datetime import date, datetime

from pydantic import (
    BaseModel,
    Field,
)

from billing_kernel.invoices.rules import Estimate
from billing_kernel.orgs.rules import BillingStatus
from billing_kernel.plans.rules import Enforcement, PlanMetric
from billing_kernel.plans.schemas import PlanOut, PolicyOut
from billing_kernel.summary.rules import Granularity, MetricUsage, OrgBillingSummary
from billing_kernel.web.schemas import (
    MoneyText,
)


class PeriodOut(BaseModel):
    start: date = Field(description="First day of the calendar month (UTC).")
    end: date = Field(
        description="First day of the next month, not part of the period: the period is the "
        "half-open [start, end). For display, use `last_day`."
    )
    last_day: date = Field(description="Last day inside the period (the day before `end`).")
    days_left: int = Field(description="Whole or partial days until `end`; 0 once it passed.")


class ValueUsageOut(BaseModel):
    value: str | None = Field(
        description="The value priced apart; null: every other value of the property."
    )
    used: int
    included: int | None = Field(
        description="Of the metric's included quantity, what covers this value's usage (the "
        "values listed first, in order); null: unlimited."
    )
    overage_quantity: int
    overage_amount: MoneyText = Field(description="As its invoice line would bill it now.")


class MetricUsageOut(BaseModel):
    metric: str
    name: str
    unit: str
    used: int
    limit: int | None = Field(description="Effective limit after overrides; null: unlimited.")
    remaining: int | None
    percent_used: float | None = Field(
        description="Floored to 0.1; null for an unlimited or zero limit."
    )
    soft_limit_exceeded: bool
    overage_quantity: int
    overage_amount: MoneyText
    peak: int | None = Field(default=None, description="Seats: the period's highest count.")
    policy: PolicyOut = Field(description="How the limit is enforced, after the org's override.")
    dimension: str | None = Field(
        default=None,
        description="A metric priced per value of an event property: the property "
        "(docs/pricing.md#prices-per-dimension); else null.",
    )
    split: list[ValueUsageOut] = Field(
        default_factory=list,
        description="A metric priced per value: its usage per value priced apart, then the "
        "other values, as its invoice lines bill them; `overage_amount` is their sum. Else "
        "empty.",
    )

    @classmethod
    def of(cls, line: MetricUsage, dimension: str | None = None) -> MetricUsageOut:
        return cls(
            metric=line.metric.key,
            name=line.metric.name,
            unit=line.metric.unit,
            used=line.used,
            limit=line.limit,
            remaining=line.remaining,
            percent_used=None if line.percent_used is None else float(line.percent_used),
            soft_limit_exceeded=line.soft_limit_exceeded,
            overage_quantity=line.overage_quantity,
            overage_amount=line.overage_amount,
            peak=line.peak,
            policy=PolicyOut.of(line.policy),
            dimension=dimension if line.shares else None,
            split=[
                ValueUsageOut(
                    value=share.value,
                    used=share.used,
                    included=share.included,
                    overage_quantity=share.over,
                    overage_amount=share.cost().amount,
                )
                for share in line.shares
            ],
        )


def _property(terms: PlanMetric) -> str | None:
    return None if terms.dimension is None else terms.dimension.property


class SummaryOut(BaseModel):
    org_id: str
    plan: PlanOut
    status: BillingStatus
    trial_ends_at: datetime | None
    trial_days_left: int | None
    period: PeriodOut
    usage: list[MetricUsageOut]
    any_soft_limit_exceeded: bool
    estimated_overage: MoneyText = Field(
        description="The period's overage so far: the sum of the usage lines' rounded charges."
    )
    estimated_total: MoneyText = Field(
        description="What the month comes to, the same figure for every caller: this month, "
        "the upcoming invoice's total so far (a trial, a start or a plan change mid-month "
        "prorated, late usage of an earlier month adjusted); a month invoiced, its "
        "invoice's total; another past month, the plan's price plus `estimated_overage`. "
        "Before tax."
    )
    estimate_notes: list[str] = Field(
        description="Why `estimated_total` is not the plan's monthly price plus "
        "`estimated_overage`, when it is not (e.g. `not billed: the org has been in trial "
        "(or canceled) all month so far`, `invoiced as INV-000001`)."
    )
    invoice_number: str | None = Field(
        description="The month's finalized invoice, once it is invoiced; null before."
    )
    currency: str
    enforcement: Enforcement = Field(
        description="`hard` when any metric's limit is hard (some use may be refused), else "
        "`soft`; each usage line has its own `policy`."
    )
    generated_at: datetime

    @classmethod
    def of(cls, summary: OrgBillingSummary, estimate: Estimate) -> SummaryOut:
        return cls(
            org_id=summary.org_id,
            plan=PlanOut.of(summary.plan),
            status=summary.state.status,
            trial_ends_at=summary.state.trial_ends_at,
            trial_days_left=summary.trial_days_left,
            period=PeriodOut(
                start=summary.period.key,
                end=summary.period.end.date(),
                last_day=summary.period.last_day,
                days_left=summary.period.days_left(summary.generated_at),
            ),
            usage=[
                MetricUsageOut.of(line, _property(summary.plan.allowance(line.metric.key)))
                for line in summary.usage
            ],
            any_soft_limit_exceeded=summary.any_soft_limit_exceeded,
            estimated_overage=summary.estimated_overage,
            estimated_total=estimate.total,
            estimate_notes=list(estimate.notes),
            invoice_number=None if estimate.invoice is None else estimate.invoice.number,
            currency=summary.plan.currency,
            enforcement=summary.enforcement,
            generated_at=summary.generated_at,
        )


class GroupOut(BaseModel):
    value: str | None = Field(
        description="The property's value as text (`true`, `false` for booleans); null: "
        "events without it."
    )
    quantity: int


class UsagePointOut(BaseModel):
    start: date = Field(description="First day of the month, or the day.")
    end: date = Field(description="The day after the point: each point is [start, end).")
    usage: dict[str, int] = Field(
        description="Per metric key. Months: the month's total (seats: the month's peak). "
        "Days: the day's accepted usage (UTC) of the metrics usage events are sent for."
    )
    groups: dict[str, list[GroupOut]] | None = Field(
        default=None,
        description="With `group_by`: per metric key, the usage of each value of that "
        "property in the point, largest first; `value` null for events without it. Seats are "
        "not counted from events: they have none.",
    )


class UsageHistoryOut(BaseModel):
    org_id: str
    granularity: Granularity
    from_: str = Field(serialization_alias="from", description="First month, YYYY-MM.")
    to: str = Field(description="Last month, YYYY-MM (included).")
    data: list[UsagePointOut] = Field(
        description="Oldest first, up to the current month or today: later ones have no usage."
    )
    next_cursor: str | None = Field(
        description="Pass as `cursor` (with the same range) for the next page; null on the last."
    )
