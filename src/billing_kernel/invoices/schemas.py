"""Invoices as the API shows them: money as decimal strings."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from billing_kernel.invoices.rules import InvoiceDraft, InvoiceLine, LineKind
from billing_kernel.summary.schemas import PeriodOut
from billing_kernel.web.schemas import MoneyText


class InvoiceLineOut(BaseModel):
    number: int = Field(description="The line's place on the invoice, from 1.")
    kind: LineKind = Field(
        description="`base_fee`: the plan in force at the period's start, for the whole "
        "period. `proration_credit` (negative) and `proration_charge`: a change of plan, "
        "version or billable status within the period, to the second. `overage` and `seats`: "
        "usage beyond what is included, priced by the plan in force at the period's end."
    )
    description: str
    amount: MoneyText = Field(description="Rounded once, half up, to cents.")
    formula: str = Field(description="How the amount was reached, with its numbers.")
    plan_slug: str
    plan_version: int
    metric: str | None = Field(description="Usage lines: the metric.")
    quantity: int = Field(
        description="Usage lines: the units billed beyond what is included; fee lines: the "
        "seconds billed."
    )
    unit_price: MoneyText = Field(
        description="Usage lines: the price per `unit_size` units; fee lines: the monthly price."
    )
    unit_size: int
    starts_at: datetime | None = Field(description="Fee lines: from when they bill.")

    @classmethod
    def of(cls, number: int, line: InvoiceLine) -> InvoiceLineOut:
        """The line's fields of the same names, and its `number`."""
        fields = {name: getattr(line, name) for name in cls.model_fields if name != "number"}
        return cls(number=number, **fields)


class InvoiceOut(BaseModel):
    org_id: str
    status: Literal["draft"] = Field(
        description="`draft`: the current period's invoice as it stands now, recomputed on "
        "every read."
    )
    period: PeriodOut
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
            period=PeriodOut(
                start=period.start.date(),
                end=period.end.date(),
                last_day=period.last_day,
                days_left=period.days_left(now),
            ),
            currency=invoice.currency,
            lines=[InvoiceLineOut.of(n, line) for n, line in enumerate(invoice.lines, 1)],
            subtotal=invoice.subtotal,
            total=invoice.total,
            generated_at=now,
        )
