"""Invoices as the API shows them: money as decimal strings."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from billing_kernel.common.periods import BillingPeriod
from billing_kernel.invoices.rules import (
    FEE_KINDS,
    Backtest,
    InvoiceDraft,
    InvoiceLine,
    LineKind,
    StoredInvoice,
    StoredLine,
)
from billing_kernel.plans.schemas import PlanBody
from billing_kernel.web.schemas import MONTH_PATTERN, MoneyText, Slug, StrictBody, Text


class InvoiceLineOut(BaseModel):
    number: int = Field(description="The line's place on the invoice, from 1.")
    kind: LineKind = Field(
        description="`base_fee`: the plan in force at the period's start, for the whole "
        "period. `proration_credit` (negative) and `proration_charge`: a change of plan, "
        "version or billable status within the period, to the second. `overage` and `seats`: "
        "usage beyond what is included, priced by the plan in force at the period's end. "
        "`adjustment`: late usage of an earlier month. `discount` (negative): what a coupon "
        "applied to the org takes off the lines above it (see `coupon`). `credit_applied` "
        "(negative): the org's credit balance (credit notes on invoices paid outside Stripe) "
        "drawn when the invoice was made, after every discount."
    )
    description: str
    amount: MoneyText = Field(description="Rounded once, half up, to cents.")
    formula: str = Field(description="How the amount was reached, with its numbers.")
    plan_slug: str
    plan_version: int
    metric: str | None = Field(description="Usage lines: the metric.")
    quantity: int = Field(
        description="Usage lines: the units billed beyond what is included; fee lines: 1 "
        "(the plan's month, in `seconds` of it)."
    )
    unit_price: MoneyText = Field(
        description="Usage lines: the price per `unit_size` units; fee lines: the monthly price."
    )
    unit_size: int
    seconds: int | None = Field(
        default=None,
        description="Fee lines: the seconds of the month billed (all of them for a whole "
        "month; prorated lines bill `unit_price` x `seconds` / the month's seconds); usage "
        "lines: null.",
    )
    starts_at: datetime | None = Field(description="Fee lines: from when they bill.")
    coupon: str | None = Field(
        default=None, description="Discount lines: the code of the coupon that takes it off."
    )
    dimension: str | None = Field(
        default=None,
        description="Usage lines of a metric priced per value (docs/pricing.md#prices-per-"
        "dimension): the event property, e.g. `model`.",
    )
    dimension_value: str | None = Field(
        default=None,
        description="... and the value the line bills, e.g. `gpt-5`; null with a `dimension`: "
        "every value the plan does not price apart.",
    )
    period: str = Field(
        description="The month the line bills, `YYYY-MM`: an adjustment's is the earlier "
        "month whose late usage it bills."
    )

    @classmethod
    def of(cls, number: int, line: InvoiceLine, period: str) -> InvoiceLineOut:
        """The line's fields of the same names, its `number` and its month."""
        named = set(cls.model_fields) - {"number", "period", "seconds"}
        fields = {name: getattr(line, name) for name in named}
        month = period if line.adjusts is None else line.adjusts.label
        return cls(number=number, period=month, **_counted(line.kind, fields))

    @classmethod
    def stored(cls, line: StoredLine) -> InvoiceLineOut:
        named = set(cls.model_fields) - {"period", "kind", "seconds"}
        kind = LineKind(line.kind)
        return cls(
            kind=kind,
            period=f"{line.period_start:%Y-%m}",
            **_counted(kind, {name: getattr(line, name) for name in named}),
        )


def _counted(kind: LineKind, fields: dict[str, Any]) -> dict[str, Any]:
    """A fee line's `quantity` (kept as the seconds it bills) read as one month and its
    `seconds`; a usage line's as it is."""
    if kind not in FEE_KINDS:
        return fields
    return fields | {"quantity": 1, "seconds": fields["quantity"]}


class InvoiceOut(BaseModel):
    org_id: str
    status: Literal["draft"] = Field(
        description="`draft`: the current period's invoice as it stands now, recomputed on "
        "every read."
    )
    period: str = Field(description="The month it bills, `YYYY-MM` (UTC).")
    period_start: date
    period_end: date = Field(description="The first day of the next month (not billed).")
    days_left: int = Field(description="Whole or partial days until the period ends.")
    currency: str
    lines: list[InvoiceLineOut]
    subtotal: MoneyText = Field(description="The sum of the rounded lines.")
    total: MoneyText = Field(description="The subtotal: no tax is added.")
    generated_at: datetime

    @classmethod
    def of(cls, invoice: InvoiceDraft, now: datetime) -> InvoiceOut:
        period = invoice.period
        return cls(
            org_id=invoice.org_id,
            status="draft",
            period=period.label,
            period_start=period.start.date(),
            period_end=period.end.date(),
            days_left=period.days_left(now),
            currency=invoice.currency,
            lines=[
                InvoiceLineOut.of(n, line, period.label) for n, line in enumerate(invoice.lines, 1)
            ],
            subtotal=invoice.subtotal,
            total=invoice.total,
            generated_at=now,
        )


class UsageBilledOut(BaseModel):
    period: str = Field(description="The month the usage belongs to, `YYYY-MM`.")
    metric: str
    quantity: int = Field(
        description="What the invoice billed of it (seats: the peak; a max: the highest; a "
        "latest: the last). For late usage of an earlier month: what it changed that month's "
        "usage by (a latest's may be negative: a credit)."
    )
    events: int = Field(description="How many usage events that is.")
    included: int | None = Field(
        description="The org's limit it was billed against; null: unlimited (or late usage "
        "of an earlier month, billed against that month's)."
    )
    split: dict[str, int] | None = Field(
        default=None,
        description="A metric priced per value: what of `quantity` was each value priced "
        "apart (the rest is the other values'); else null.",
    )


class FinalizedInvoiceOut(BaseModel):
    invoice_id: str
    number: str = Field(description="Gap-free across the deployment, with its prefix.")
    org_id: str
    period: str = Field(description="The month it bills, `YYYY-MM` (UTC).")
    period_start: date
    period_end: date = Field(description="The first day of the next month (not billed).")
    status: Literal["open", "paid", "void"] = Field(
        description="`open`: finalized, unpaid; `paid`; `void` (see `void_reason`; the "
        "invoice whose `replaces` is this one corrects it)."
    )
    currency: str
    subtotal: MoneyText = Field(
        description="The sum of its lines, discounts included, but a `credit_applied` one."
    )
    total: MoneyText = Field(
        description="What is to be paid: the subtotal less the credit balance applied (a "
        "`credit_applied` line); no tax is added."
    )
    plan_slug: str = Field(description="The plan in force at the month's end.")
    plan_version: int
    issued_at: datetime
    paid_at: datetime | None
    paid_by: str | None = Field(
        default=None,
        description="The payment (through Stripe) that paid it; null for one marked paid by "
        "hand (paid outside Stripe, such as by bank transfer) or not paid.",
    )
    credited: MoneyText = Field(
        default=Decimal(0),
        description="What its credit notes gave back, in all (a paid invoice is corrected by "
        "credit notes, never voided).",
    )
    voided_at: datetime | None
    void_reason: str | None
    replaces: str | None = Field(description="The voided invoice this one corrects.")
    lines: list[InvoiceLineOut] | None = Field(
        default=None, description="Its lines (left out in lists)."
    )
    usage: list[UsageBilledOut] | None = Field(
        default=None, description="The usage it billed (left out in lists)."
    )

    @classmethod
    def of(cls, invoice: StoredInvoice, *, whole: bool = True) -> FinalizedInvoiceOut:
        named = set(cls.model_fields) - {"period", "period_end", "lines", "usage"}
        return cls(
            period=f"{invoice.period_start:%Y-%m}",
            period_end=BillingPeriod.starting(invoice.period_start).end.date(),
            lines=[InvoiceLineOut.stored(line) for line in invoice.lines] if whole else None,
            usage=[
                UsageBilledOut(
                    period=f"{u.period_start:%Y-%m}",
                    metric=u.metric,
                    quantity=u.quantity,
                    events=u.events,
                    included=u.included,
                    split=None if u.split is None else dict(u.split),
                )
                for u in invoice.usage
            ]
            if whole
            else None,
            **{name: getattr(invoice, name) for name in named},
        )


class LineExplainedOut(BaseModel):
    invoice_id: str
    number: str = Field(description="The invoice's number.")
    line: InvoiceLineOut
    events: int = Field(description="How many usage events the line bills (0 for fees).")
    sample_keys: list[str] = Field(
        description="The first few of those events' idempotency keys, in key order."
    )


class VoidIn(StrictBody):
    reason: Annotated[Text, Field(min_length=1, max_length=500)] = Field(
        examples=["the seats were counted twice"]
    )


class BacktestIn(StrictBody):
    """A draft of a plan's terms, and the closed month to price it against."""

    period: Annotated[str, Field(pattern=MONTH_PATTERN, examples=["2026-11"])] = Field(
        description="A closed month, `YYYY-MM`."
    )
    plan: PlanBody = Field(
        description="The draft, whole, as `updatePlan` takes it: checked as an update would "
        "be, in the plan's currency."
    )
    org_ids: Annotated[list[Slug], Field(min_length=1, max_length=1000)] | None = Field(
        default=None,
        description="Only these orgs' invoices of the month (whatever plan made them: the "
        "draft stands in for the plan only where an org was on it). Left out: every org the "
        "plan invoiced for the month.",
    )


class BacktestOrgOut(BaseModel):
    org_id: str
    invoice_number: str = Field(description="The invoice the org got for the month.")
    plan_version: int = Field(description="The version of the plan that made it.")
    invoiced: MoneyText = Field(
        description="What the invoice charged, before any credit balance it drew."
    )
    draft: MoneyText = Field(description="What the draft would have charged, the same way.")
    difference: MoneyText = Field(description="`draft` - `invoiced`.")
    lines: list[InvoiceLineOut] = Field(description="The draft's invoice lines.")


class BacktestOut(BaseModel):
    plan_slug: str
    period: str = Field(description="`YYYY-MM`.")
    currency: str
    orgs: list[BacktestOrgOut] = Field(description="In org order.")
    invoiced: MoneyText = Field(description="In all.")
    draft: MoneyText = Field(description="In all.")
    difference: MoneyText = Field(description="In all.")

    @classmethod
    def of(cls, backtest: Backtest) -> BacktestOut:
        label = backtest.period.label
        return cls(
            plan_slug=backtest.plan_slug,
            period=label,
            currency=backtest.currency,
            orgs=[
                BacktestOrgOut(
                    org_id=row.org_id,
                    invoice_number=row.invoice_number,
                    plan_version=row.plan_version,
                    invoiced=row.invoiced,
                    draft=row.draft.total,
                    difference=row.difference,
                    lines=[
                        InvoiceLineOut.of(n, line, label)
                        for n, line in enumerate(row.draft.lines, 1)
                    ],
                )
                for row in backtest.rows
            ],
            invoiced=backtest.invoiced,
            draft=backtest.drafted,
            difference=backtest.difference,
        )
