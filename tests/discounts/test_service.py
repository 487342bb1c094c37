"""Coupons through the services, on both databases: applied to orgs within their limits,
taken off the invoices of the months they cover, reproduced by `invoices verify`."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import update

from billing_kernel.common.periods import BillingPeriod
from billing_kernel.db.database import Database
from billing_kernel.db.tables import coupons
from billing_kernel.discounts.rules import FEE, Coupon, Duration, Kind
from billing_kernel.errors import CouponExists, CouponNotApplicable, CouponNotFound
from billing_kernel.kernel import Kernel
from billing_kernel.orgs.rules import BillingStatus
from tests.conftest import Clock, make_kernel, new_id

pytestmark = pytest.mark.anyio

D = Decimal
DAY = timedelta(days=1)


def coupon(**terms: object) -> Coupon:
    base: dict[str, object] = {
        "code": new_id("C"),
        "name": "Launch",
        "kind": Kind.PERCENT,
        "value": D("20"),
        "duration": Duration.REPEATING,
        "periods": 3,
    }
    return Coupon(**{**base, **terms})  # type: ignore[arg-type]


async def paying_org(kernel: Kernel, clock: Clock, plan: str = "starter") -> str:
    org_id = new_id()
    await kernel.orgs.create(org_id, plan_slug=plan)
    await kernel.subscriptions.set_status(org_id, BillingStatus.ACTIVE)
    return org_id


async def close(kernel: Kernel, clock: Clock, org_id: str, period: BillingPeriod) -> list:
    clock.now = period.end + DAY
    invoice = await kernel.invoices.close(org_id, period)
    assert invoice is not None
    return [(line.kind, str(line.amount), line.coupon) for line in invoice.lines]


async def test_a_repeating_coupon_takes_its_share_of_three_months_and_no_more(
    kernel: Kernel, clock: Clock
) -> None:
    april = BillingPeriod.parse("2026-04")
    clock.now = april.start
    org_id = await paying_org(kernel, clock)
    launch, _ = await kernel.discounts.create(coupon())
    clock.now = april.start + 9 * DAY
    await kernel.usage.record(org_id, "tokens", 1_200_000, idempotency_key=new_id("e"))
    redemption, made = await kernel.discounts.apply(org_id, launch.code)
    assert made
    assert redemption.redeemed_at == clock.now
    assert (await kernel.discounts.apply(org_id, launch.code)) == (redemption, False)  # a retry
    clock.advance(seconds=1)
    upcoming = await kernel.invoices.upcoming(org_id)
    assert upcoming.total == D("42.40")  # (49.00 + 4.00) less 20 %
    months = [april, april.next(), april.next().next(), april.next().next().next()]
    lines = [await close(kernel, clock, org_id, month) for month in months]
    discount = ("discount", "-10.60", launch.code)
    assert lines[0] == [("base_fee", "49.00", None), ("overage", "4.00", None), discount]
    assert lines[1] == lines[2] == [("base_fee", "49.00", None), ("discount", "-9.80", launch.code)]
    assert lines[3] == [("base_fee", "49.00", None)]  # the fourth month: no more

    first = await kernel.invoices.get((await kernel.invoices.list_invoices(org_id))[-1].invoice_id)
    line = first.lines[-1]
    assert line.description == f"Launch ({launch.code}): 20% off"
    assert line.formula == "20% of 53.00 = 10.6 → -10.60"
    assert (first.subtotal, first.total) == (D("42.40"), D("42.40"))
    assert await kernel.invoices.verify() == []
    assert (await kernel.discounts.get(launch.code)).redemptions == 1


async def test_an_amount_off_applies_once_to_its_lines_and_in_its_currency(
    kernel: Kernel, clock: Clock
) -> None:
    may = BillingPeriod.parse("2026-05")
    clock.now = may.start
    org_id = await paying_org(kernel, clock)
    clock.advance(days=1)
    fee_only, _ = await kernel.discounts.create(
        coupon(
            kind=Kind.AMOUNT,
            value=D("60.00"),
            currency="USD",
            duration=Duration.ONCE,
            periods=None,
            applies_to=(FEE,),
        )
    )
    await kernel.discounts.apply(org_id, fee_only.code)
    await kernel.usage.record(org_id, "tokens", 2_000_000, idempotency_key=new_id("e"))
    assert await close(kernel, clock, org_id, may) == [
        ("base_fee", "49.00", None),
        ("overage", "20.00", None),
        ("discount", "-49.00", fee_only.code),  # no more than the fee it applies to
    ]
    assert await close(kernel, clock, org_id, may.next()) == [("base_fee", "49.00", None)]

    euros, _ = await kernel.discounts.create(
        coupon(
            kind=Kind.AMOUNT,
            value=D("5.00"),
            currency="EUR",
            duration=Duration.FOREVER,
            periods=None,
        )
    )
    with pytest.raises(CouponNotApplicable, match=f"{org_id} is billed in USD"):
        await kernel.discounts.apply(org_id, euros.code)
    assert [r.coupon.code for r in await kernel.discounts.redemptions(org_id)] == [fee_only.code]
    assert (await kernel.discounts.get(euros.code)).redemptions == 0
    assert await kernel.invoices.verify() == []


async def test_a_coupon_removed_stops_at_the_next_invoice_and_the_last_one_still_verifies(
    kernel: Kernel, clock: Clock
) -> None:
    june = BillingPeriod.parse("2026-06")
    clock.now = june.start
    org_id = await paying_org(kernel, clock)
    forever, _ = await kernel.discounts.create(coupon(duration=Duration.FOREVER, periods=None))
    await kernel.discounts.apply(org_id, forever.code)
    assert (await close(kernel, clock, org_id, june))[-1] == ("discount", "-9.80", forever.code)
    removed = await kernel.discounts.remove(org_id, forever.code)
    assert removed.removed_at == clock.now
    assert await kernel.discounts.remove(org_id, forever.code) == removed  # idempotent
    assert await close(kernel, clock, org_id, june.next()) == [("base_fee", "49.00", None)]
    assert await kernel.invoices.verify() == []  # June's made while it applied: still its
    with pytest.raises(CouponNotApplicable, match="applies to an org once"):
        await kernel.discounts.apply(org_id, forever.code)
    with pytest.raises(CouponNotFound, match="never applied"):
        await kernel.discounts.remove(
            new_id_of_org := await paying_org(kernel, clock), forever.code
        )
    assert new_id_of_org


async def test_coupons_take_in_the_order_applied_before_the_credit_balance(
    kernel: Kernel, clock: Clock
) -> None:
    july = BillingPeriod.parse("2026-07")
    clock.now = july.start
    org_id = await paying_org(kernel, clock)
    clock.advance(days=1)
    half, _ = await kernel.discounts.create(coupon(value=D("50")))
    ten, _ = await kernel.discounts.create(
        coupon(
            kind=Kind.AMOUNT, value=D("10.00"), currency="USD", duration=Duration.ONCE, periods=None
        )
    )
    await kernel.discounts.apply(org_id, half.code)
    clock.advance(seconds=1)
    await kernel.discounts.apply(org_id, ten.code)
    assert await close(kernel, clock, org_id, july) == [
        ("base_fee", "49.00", None),
        ("discount", "-24.50", half.code),
        ("discount", "-10.00", ten.code),  # from what the first left
    ]


async def test_a_coupon_is_defined_once_and_applied_only_while_it_may_be(
    kernel: Kernel, clock: Clock, database: Database
) -> None:
    clock.now = datetime(2026, 8, 3, tzinfo=UTC)
    dated = coupon(redeem_by=datetime(2026, 8, 10, tzinfo=UTC))
    made, created = await kernel.discounts.create(dated)
    assert created
    assert made.created_at == clock.now
    assert made.redemptions == 0
    assert await kernel.discounts.create(dated) == (made, False)
    with pytest.raises(CouponExists, match="exists with other terms"):
        await kernel.discounts.create(coupon(code=dated.code, value=D("30")))
    org_id = await paying_org(kernel, clock)
    clock.now = datetime(2026, 8, 10, 0, 0, 1, tzinfo=UTC)
    with pytest.raises(CouponNotApplicable, match="could be applied until 2026-08-10"):
        await kernel.discounts.apply(org_id, dated.code)
    archived = await kernel.discounts.archive((await kernel.discounts.create(coupon()))[0].code)
    assert archived.archived_at == clock.now
    with pytest.raises(CouponNotApplicable, match="is archived"):
        await kernel.discounts.apply(org_id, archived.code)
    with pytest.raises(CouponNotFound):
        await kernel.discounts.apply(org_id, new_id("NONE"))
    assert await kernel.discounts.redemptions(org_id) == []

    # A count that disagrees with the orgs it was applied to is found by verify.
    async with database.transaction() as conn:
        await conn.execute(
            update(coupons).where(coupons.c.code == archived.code).values(redemptions=1)
        )
    assert f"coupon {archived.code}: counts 1 orgs, applied to 0" in await kernel.invoices.verify()
    async with database.transaction() as conn:
        await conn.execute(
            update(coupons).where(coupons.c.code == archived.code).values(redemptions=0)
        )


async def test_of_many_orgs_racing_for_a_coupons_last_places_exactly_its_limit_get_it(
    kernel: Kernel, clock: Clock
) -> None:
    clock.now = datetime(2026, 9, 2, tzinfo=UTC)
    limited, _ = await kernel.discounts.create(coupon(max_redemptions=5))
    orgs = [await paying_org(kernel, clock) for _ in range(20)]
    results = await asyncio.gather(
        *(kernel.discounts.apply(org, limited.code) for org in orgs), return_exceptions=True
    )
    won = [r for r in results if isinstance(r, tuple)]
    lost = [r for r in results if isinstance(r, CouponNotApplicable)]
    assert (len(won), len(lost)) == (5, 15)
    assert all("its limit of 5" in str(r) for r in lost)
    assert (await kernel.discounts.get(limited.code)).redemptions == 5
    assert await kernel.invoices.verify() == []


class Ticking(Clock):
    """A clock that moves a microsecond on every reading, as a real one does."""

    def __call__(self) -> datetime:
        self.now += timedelta(microseconds=1)
        return self.now


async def test_an_invoice_made_while_its_coupon_is_removed_is_what_verify_recomputes(
    database: Database,
) -> None:
    october = BillingPeriod.parse("2026-10")
    ticking = Ticking(october.start)
    kernel = make_kernel(database, ticking)
    orgs = [await paying_org(kernel, ticking) for _ in range(8)]
    ticking.now = october.end + 2 * DAY
    racing, _ = await kernel.discounts.create(coupon(duration=Duration.FOREVER, periods=None))
    # Applied in October to half the orgs, then removed while October closes: each invoice
    # takes it or not, as the removal came before or after it, and verify agrees.
    ticking.now = october.end - timedelta(seconds=5)
    for org_id in orgs[::2]:
        await kernel.discounts.apply(org_id, racing.code)
    ticking.now = october.end + 2 * DAY
    await asyncio.gather(
        *(kernel.invoices.close(org_id, october) for org_id in orgs),
        *(kernel.discounts.remove(org_id, racing.code) for org_id in orgs[::2]),
    )
    assert await kernel.invoices.verify() == []
