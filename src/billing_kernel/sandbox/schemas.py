"""The sandbox clock as the API shows and takes it."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from billing_kernel.sandbox.rules import STEP_PATTERN
from billing_kernel.sandbox.service import ClockState, Moved
from billing_kernel.web.schemas import DateTimeText, StrictBody


class AdvanceIn(StrictBody):
    by: str = Field(
        max_length=40,
        pattern=STEP_PATTERN.pattern,
        description="How far: a whole number from 1 and a unit, `minute(s)`, `hour(s)`, "
        "`day(s)`, `week(s)` or `month(s)` (a calendar month: the same day and time, or the "
        "month's last day).",
        examples=["1 month"],
    )


class SetIn(StrictBody):
    to: DateTimeText = Field(
        description="The time to move the clock to: not before the clock's, at most two "
        "years past real time.",
        examples=["2027-01-02T09:00:00Z"],
    )


class ClockOut(BaseModel):
    now: datetime = Field(description="The kernel's time.")
    moved: bool = Field(description="Whether it stands past real time.")
    offset_seconds: float = Field(description="How far past real time (0: real time).")

    @classmethod
    def of(cls, state: ClockState) -> ClockOut:
        return cls(
            now=state.now,
            moved=bool(state.offset),
            offset_seconds=state.offset.total_seconds(),
        )


class ClosedOut(BaseModel):
    org_id: str
    period: str = Field(description="`YYYY-MM`.")
    invoice_id: str
    number: str
    currency: str
    total: str = Field(description="Decimal text, two places.", examples=["59.28"])


class MovedOut(ClockOut):
    closed: list[ClosedOut] = Field(
        description="The invoices the move made due, finalized (months that closed)."
    )
    failed: list[str] = Field(
        description="Orgs whose invoice could not be made, with why (also an "
        "`invoice.close_failed` event)."
    )

    @classmethod
    def of_move(cls, moved: Moved) -> MovedOut:
        clock = ClockOut.of(moved.clock)
        return cls(
            **clock.model_dump(),
            closed=[
                ClosedOut(
                    org_id=i.org_id,
                    period=f"{i.period_start:%Y-%m}",
                    invoice_id=i.invoice_id,
                    number=i.number,
                    currency=i.currency,
                    total=f"{i.total:.2f}",
                )
                for i in moved.closed.closed
            ],
            failed=[f"{f.org_id} {f.period.label}: {f.reason}" for f in moved.closed.failed],
        )
