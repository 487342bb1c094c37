"""Coupons and the orgs they are applied to, as the API shows them."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, Field, model_validator

from billing_kernel.common.money import exact_text
from billing_kernel.discounts.rules import Coupon, Duration, Kind, Redemption
from billing_kernel.web.schemas import DateTimeText, MoneyText, StrictBody, Text, WholeNumber

AmountText = Annotated[
    str,
    Field(
        pattern=r"^[0-9]{1,12}(\.[0-9]{1,2})?$",
        description='A decimal as a string, at most two decimals: "20" or "5.00".',
    ),
]
Key = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]{0,63}$")]


class CouponIn(StrictBody):
    """A coupon as the operator defines it: a percentage or an amount off, for how long, on
    which lines, for how many orgs and until when."""

    code: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$",
        description="How it is named when applied to an org: 1 to 64 letters, digits, _ and "
        "-. Never changes, nor do its terms.",
        examples=["LAUNCH20"],
    )
    name: Annotated[Text, Field(min_length=1, max_length=200)] = Field(
        description="What invoices call it.", examples=["Launch offer"]
    )
    percent_off: AmountText | None = Field(
        default=None,
        description="Above 0, at most 100: the share it takes off its lines. Give this or "
        "`amount_off`.",
        examples=["20"],
    )
    amount_off: AmountText | None = Field(
        default=None,
        description="Above 0: the amount it takes off each invoice it covers, in `currency`, "
        "never more than its lines come to. Give this or `percent_off`.",
    )
    currency: str | None = Field(
        default=None,
        pattern=r"^[A-Z]{3}$",
        description="The currency of `amount_off` (orgs billed in another cannot take it).",
    )
    duration: Literal["once", "repeating", "forever"] = Field(
        description="`once`: the invoice of the month it is applied in; `repeating`: that "
        "month's and the `periods - 1` after it; `forever`: every month's from it."
    )
    periods: Annotated[int, Field(ge=1), WholeNumber] | None = Field(
        default=None, description="How many months a `repeating` coupon covers (1 to 120)."
    )
    plans: list[Key] | None = Field(
        default=None,
        description="Only lines of these plans (by slug); left out: any plan's.",
        max_length=50,
    )
    applies_to: list[Key] | None = Field(
        default=None,
        description="Only these lines: `fee` (the plan fee and its proration) and metric "
        "keys (their usage lines, late adjustments included); left out: every line.",
        max_length=50,
        examples=[["fee"]],
    )
    max_redemptions: Annotated[int, Field(ge=1), WholeNumber] | None = Field(
        default=None, description="How many orgs it may be applied to in all."
    )
    redeem_by: DateTimeText | None = Field(
        default=None,
        description="The last moment it may be applied to an org (those it was applied to "
        "keep it).",
    )

    @model_validator(mode="after")
    def _one_of(self) -> CouponIn:
        if (self.percent_off is None) == (self.amount_off is None):
            raise ValueError("give percent_off or amount_off, one of them")
        return self

    def coupon(self) -> Coupon:
        percent = self.percent_off is not None
        return Coupon(
            code=self.code,
            name=self.name,
            kind=Kind.PERCENT if percent else Kind.AMOUNT,
            value=Decimal(self.percent_off or self.amount_off or "0"),
            duration=Duration(self.duration),
            currency=self.currency,
            periods=self.periods,
            plans=None if self.plans is None else tuple(self.plans),
            applies_to=None if self.applies_to is None else tuple(self.applies_to),
            max_redemptions=self.max_redemptions,
            redeem_by=self.redeem_by,
        )


class CouponOut(BaseModel):
    code: str
    name: str
    description: str = Field(description="The coupon in words: `20% off for 3 months`.")
    percent_off: str | None
    amount_off: MoneyText | None
    currency: str | None
    duration: str
    periods: int | None
    plans: list[str] | None
    applies_to: list[str] | None
    max_redemptions: int | None
    redeem_by: datetime | None
    redemptions: int = Field(description="How many orgs it has been applied to.")
    created_at: datetime | None
    archived_at: datetime | None = Field(
        description="When it stopped being applicable to more orgs; null: it is not."
    )

    @classmethod
    def of(cls, coupon: Coupon) -> CouponOut:
        percent = coupon.kind is Kind.PERCENT
        return cls(
            code=coupon.code,
            name=coupon.name,
            description=coupon.describe(),
            percent_off=exact_text(coupon.value) if percent else None,
            amount_off=None if percent else coupon.value,
            currency=coupon.currency,
            duration=coupon.duration.value,
            periods=coupon.periods,
            plans=None if coupon.plans is None else list(coupon.plans),
            applies_to=None if coupon.applies_to is None else list(coupon.applies_to),
            max_redemptions=coupon.max_redemptions,
            redeem_by=coupon.redeem_by,
            redemptions=coupon.redemptions,
            created_at=coupon.created_at,
            archived_at=coupon.archived_at,
        )


class CouponsOut(BaseModel):
    coupons: list[CouponOut]


class RedemptionOut(BaseModel):
    org_id: str
    coupon: CouponOut
    applied_at: datetime = Field(
        description="When it was applied: it covers the month of this time first."
    )
    removed_at: datetime | None = Field(
        description="When it was removed: invoices made after no longer take it off."
    )

    @classmethod
    def of(cls, redemption: Redemption) -> RedemptionOut:
        return cls(
            org_id=redemption.org_id,
            coupon=CouponOut.of(redemption.coupon),
            applied_at=redemption.redeemed_at,
            removed_at=redemption.removed_at,
        )


class RedemptionsOut(BaseModel):
    org_id: str
    coupons: list[RedemptionOut] = Field(
        description="The coupons applied to the org, removed ones too, in the order they "
        "were applied (the order they take from its invoices)."
    )
