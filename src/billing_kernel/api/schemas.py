"""Request and response bodies. Money is a decimal string (`"49.00"`), never a JSON number."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
)

from billing_kernel.domain.billing_state import BillingStatus, MemberRole
from billing_kernel.domain.money import money_text
from billing_kernel.domain.plans import Plan
from billing_kernel.domain.quota import Enforcement
from billing_kernel.domain.summary import MetricUsage, OrgBillingSummary
from billing_kernel.domain.usage import ID_PATTERN_TEXT, MAX_EVENT_QUANTITY
from billing_kernel.service import RecordStatus

MoneyText = Annotated[
    Decimal,
    PlainSerializer(money_text, return_type=str),
    Field(description='A decimal amount as a string, e.g. "49.00".'),
]


def _text_only(value: object) -> object:
    """Times are RFC 3339 strings in this API; a number is not taken for a Unix time."""
    if not isinstance(value, str):
        raise ValueError("must be an RFC 3339 date-time string with a time zone")
    return value


def _whole_number(value: object) -> object:
    """A JSON integer, or a number with no fraction (JSON Schema's `integer` admits 2.0).
    Strings, booleans and fractions are refused rather than coerced."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("must be a whole number")
    return value


WholeNumber = Annotated[int, BeforeValidator(_whole_number)]


Slug = Annotated[str, Field(max_length=64, pattern=ID_PATTERN_TEXT)]
"""An identifier: no control characters, no leading or trailing white space."""
Text = Annotated[str, Field(pattern=r"^[^\x00-\x1f\x7f]*$")]
"""Free text without control characters."""


class StrictBody(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FromDomain(BaseModel):
    """A response body read straight off a domain object's attributes of the same names."""

    model_config = ConfigDict(from_attributes=True)


class PlanTermsOut(FromDomain):
    metric: str
    included_quantity: int | None = Field(description="Included per month; null: unlimited.")
    overage_unit_price: MoneyText
    overage_unit_size: int = Field(description="Units the overage price is for, e.g. 1000.")


class PlanOut(BaseModel):
    slug: str
    name: str
    description: str
    currency: str
    monthly_price: MoneyText
    is_active: bool
    metrics: list[PlanTermsOut]

    @classmethod
    def of(cls, plan: Plan) -> PlanOut:
        terms = [PlanTermsOut.model_validate(t) for t in plan.metrics.values()]
        return cls(
            slug=plan.slug,
            name=plan.name,
            description=plan.description,
            currency=plan.currency,
            monthly_price=plan.monthly_price,
            is_active=plan.is_active,
            metrics=terms,
        )


class PlansOut(BaseModel):
    plans: list[PlanOut]


class PeriodOut(BaseModel):
    start: date = Field(description="First day of the calendar month (UTC).")
    end: date = Field(description="First day of the next month: the period is [start, end).")
    days_left: int


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

    @classmethod
    def of(cls, line: MetricUsage) -> MetricUsageOut:
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
        )


class SummaryOut(BaseModel):
    org_id: str
    plan: PlanOut
    status: BillingStatus
    trial_ends_at: datetime | None
    trial_days_left: int | None
    period: PeriodOut
    usage: list[MetricUsageOut]
    any_soft_limit_exceeded: bool
    estimated_overage: MoneyText
    currency: str
    enforcement: Enforcement
    generated_at: datetime

    @classmethod
    def of(cls, summary: OrgBillingSummary) -> SummaryOut:
        return cls(
            org_id=summary.org_id,
            plan=PlanOut.of(summary.plan),
            status=summary.state.status,
            trial_ends_at=summary.state.trial_ends_at,
            trial_days_left=summary.trial_days_left,
            period=PeriodOut(
                start=summary.period.key,
                end=summary.period.end.date(),
                days_left=summary.period.days_left(summary.generated_at),
            ),
            usage=[MetricUsageOut.of(line) for line in summary.usage],
            any_soft_limit_exceeded=summary.any_soft_limit_exceeded,
            estimated_overage=summary.estimated_overage,
            currency=summary.plan.currency,
            enforcement=Enforcement.SOFT,
            generated_at=summary.generated_at,
        )


class PlanChangeIn(StrictBody):
    plan_slug: Slug = Field(description="Slug of an active plan.", examples=["growth"])


class PlanChangeOut(BaseModel):
    org_id: str
    plan_slug: str
    status: BillingStatus


class CheckIn(StrictBody):
    metric: str = Field(examples=["tokens"])
    amount: WholeNumber = Field(
        default=1, ge=0, le=MAX_EVENT_QUANTITY, description="How much more the org would use."
    )


class CheckOut(FromDomain):
    metric: str
    requested: int
    used: int
    limit: int | None
    remaining: int | None
    soft_limit_exceeded: bool = Field(description="Usage is already beyond the limit.")
    would_exceed: bool = Field(description="Usage plus the amount would be beyond the limit.")
    allowed: bool = Field(description="Always true while limits are soft.")
    enforcement: Enforcement


class UsageEventIn(StrictBody):
    """One usage event. The JSON types are checked for the whole batch; the values (id
    lengths, quantity range, metric, event time) are judged per event."""

    org_id: str = Field(description="The product's org id, 1-64 characters.")
    metric: str = Field(examples=["tokens"])
    quantity: WholeNumber = Field(description=f"A whole number from 0 to {MAX_EVENT_QUANTITY}.")
    idempotency_key: str = Field(
        description="1-255 characters, unique per org: a repeat counts once."
    )
    occurred_at: Annotated[AwareDatetime, BeforeValidator(_text_only)] | None = Field(
        default=None,
        description="When the usage happened (decides the month); default: when received. "
        "At most 5 minutes ahead and 35 days back.",
    )


MAX_BATCH = 1000


class UsageBatchIn(StrictBody):
    events: list[UsageEventIn] = Field(min_length=1, max_length=MAX_BATCH)


class EventError(BaseModel):
    code: str
    detail: str


class EventResultOut(BaseModel):
    index: int = Field(description="Position of the event in the request.")
    org_id: str
    idempotency_key: str
    status: RecordStatus = Field(description="accepted, duplicate or refused.")
    error: EventError | None = Field(default=None, description="Why it was refused.")


class UsageBatchOut(BaseModel):
    accepted: int
    duplicates: int
    refused: int
    results: list[EventResultOut]


class OrgIn(StrictBody):
    name: Text | None = Field(default=None, max_length=200)
    plan_slug: Slug | None = Field(default=None, description="Move the org to this plan.")


class OrgOut(BaseModel):
    org_id: str
    name: str | None
    plan_slug: str
    status: BillingStatus
    trial_ends_at: datetime | None


class MemberIn(StrictBody):
    role: MemberRole = MemberRole.MEMBER
    email: Text | None = Field(default=None, max_length=320)


class MemberOut(BaseModel):
    user_id: str
    role: MemberRole


class MembersOut(BaseModel):
    org_id: str
    seats: int
    members: list[MemberOut]


class HealthOut(BaseModel):
    status: str
