"""The invoice rules: fee and proration lines to the second, usage priced by the plan in
force at the period's end, money rounded once per line. Hand-computed cases, then
properties over any history."""

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing_kernel.common.money import MAX_AMOUNT, ZERO, within_bounds
from billing_kernel.common.periods import BillingPeriod
from billing_kernel.discounts.rules import FEE, Coupon, Duration, Kind
from billing_kernel.errors import CurrencyChange, PeriodNotClosed
from billing_kernel.invoices.rules import (
    Backtest,
    BacktestRow,
    Estimate,
    InvoiceDraft,
    InvoiceLine,
    LateUsage,
    LineKind,
    StoredInvoice,
    StoredLine,
    Subscription,
    adjustment_lines,
    change_lines,
    closes_at,
    credit_applied_line,
    discount_lines,
    draft_invoice,
    estimate_notes,
    fee_lines,
    formula_for_people,
    in_force,
    require_closed,
    usage_lines,
    usage_of,
    whole_second,
)
from billing_kernel.metrics.rules import DEFAULT_METRICS, Aggregation, Metric, Position, Tally
from billing_kernel.plans.rules import Plan, PlanMetric
from billing_kernel.pricing.rules import Dimension, Price, PriceModel, Tier, ValuePrice
from tests.seeded import GROWTH, STARTER

FREE = replace(STARTER, slug="internal-dev", name="Internal", monthly_price=Decimal("0.00"))
NOVEMBER = BillingPeriod.parse("2026-11")
DAY = timedelta(days=1)
LIMITS = {key: t.included_quantity for key, t in STARTER.metrics.items()}


def at(day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute, second, tzinfo=UTC)


def on(plan: Plan, since: datetime, billable: bool = True) -> Subscription:
    return Subscription(since, plan, billable)


def amounts(lines: list[InvoiceLine]) -> list[tuple[LineKind, str]]:
    return [(line.kind, str(line.amount)) for line in lines]


def test_a_whole_month_on_one_plan_bills_its_price_and_each_metric_beyond_its_limit() -> None:
    invoice = draft_invoice(
        "acme",
        NOVEMBER,
        [on(STARTER, datetime(2026, 10, 3, 9, tzinfo=UTC))],
        DEFAULT_METRICS,
        {"tokens": 1_234_567, "playbook_runs": 203, "seats": 5},
        LIMITS,
    )
    assert amounts(list(invoice.lines)) == [
        (LineKind.BASE_FEE, "49.00"),
        (LineKind.OVERAGE, "4.69"),  # 234,567 x 0.02 / 1,000 = 4.69134
        (LineKind.OVERAGE, "0.75"),  # 3 x 0.25
        (LineKind.SEATS, "30.00"),  # peak 5, 3 included, 15.00 each
    ]
    assert (invoice.subtotal, invoice.total, invoice.currency) == (
        Decimal("84.44"),
        Decimal("84.44"),
        "USD",
    )
    tokens = invoice.lines[1]
    assert (tokens.metric, tokens.quantity, tokens.unit_price, tokens.unit_size) == (
        "tokens",
        234_567,
        Decimal("0.02"),
        1_000,
    )
    assert tokens.formula == "(1,234,567 - 1,000,000) x 0.02 / 1,000 = 4.69134 → 4.69"
    assert tokens.description == "LLM tokens: 234,567 tokens over the 1,000,000 included"
    assert invoice.lines[3].description.endswith("(the period's peak)")
    assert invoice.lines[0].formula == "49.00 → 49.00"
    assert invoice.lines[0].description == "Starter (v1), 2026-11"


def test_a_mid_period_upgrade_credits_the_old_plan_and_charges_the_new_to_the_second() -> None:
    history = [on(STARTER, at(1)), on(GROWTH, at(16))]  # 15 of November's 30 days left
    lines = fee_lines(NOVEMBER, history)
    assert amounts(lines) == [
        (LineKind.BASE_FEE, "49.00"),
        (LineKind.PRORATION_CREDIT, "-24.50"),
        (LineKind.PRORATION_CHARGE, "99.50"),
    ]
    assert lines[1].formula == "49.00 x 1,296,000 s / 2,592,000 s = 24.5, credited → -24.50"
    assert lines[2].description == "Remaining time on Growth (v1) from 2026-11-16 00:00:00 UTC"
    assert (lines[2].quantity, lines[2].starts_at) == (1_296_000, at(16))
    # Usage is priced by the plan in force at the period's end: Growth includes 5M tokens.
    invoice = draft_invoice("acme", NOVEMBER, history, DEFAULT_METRICS, {"tokens": 1_500_000}, {})
    assert invoice.total == Decimal("124.00")


def test_a_change_and_its_reverse_at_one_instant_net_to_zero() -> None:
    history = [on(STARTER, at(1)), on(GROWTH, at(10, 7, 3, 1)), on(STARTER, at(10, 7, 3, 1))]
    lines = fee_lines(NOVEMBER, history)
    assert [line.kind for line in lines] == [
        LineKind.BASE_FEE,
        LineKind.PRORATION_CREDIT,
        LineKind.PRORATION_CHARGE,
        LineKind.PRORATION_CREDIT,
        LineKind.PRORATION_CHARGE,
    ]
    assert sum(line.amount for line in lines) == Decimal("49.00")


def test_a_trial_is_not_billed_and_billing_starts_when_it_ends() -> None:
    trial = [on(STARTER, at(1), billable=False)]
    assert draft_invoice("acme", NOVEMBER, trial, DEFAULT_METRICS, {"tokens": 9**9}, {}).lines == ()
    paid = [*trial, on(STARTER, at(16))]
    invoice = draft_invoice("acme", NOVEMBER, paid, DEFAULT_METRICS, {"tokens": 1_001_000}, {})
    assert amounts(list(invoice.lines)) == [
        (LineKind.PRORATION_CHARGE, "24.50"),
        (LineKind.OVERAGE, "0.02"),  # the month's usage, in full
    ]
    canceled = [on(STARTER, at(1)), on(STARTER, at(21), billable=False)]
    assert amounts(fee_lines(NOVEMBER, canceled)) == [
        (LineKind.BASE_FEE, "49.00"),
        (LineKind.PRORATION_CREDIT, "-16.33"),  # 10 days of 30: 16.333…
    ]


def test_an_org_that_starts_mid_period_pays_from_its_start() -> None:
    lines = fee_lines(NOVEMBER, [on(GROWTH, at(21, 12))])
    assert amounts(lines) == [(LineKind.PRORATION_CHARGE, "63.02")]  # 9.5 days: 63.0166…
    with pytest.raises(ValueError, match="no plan"):
        draft_invoice("acme", NOVEMBER, [on(GROWTH, at(30) + timedelta(days=1))], (), {}, {})


def test_a_change_at_the_first_second_replaces_the_plan_and_at_the_last_bills_one_second() -> None:
    first = fee_lines(NOVEMBER, [on(STARTER, at(1) - timedelta(days=3)), on(GROWTH, at(1))])
    assert amounts(first) == [(LineKind.BASE_FEE, "199.00")]
    last_second = NOVEMBER.end - timedelta(seconds=1)
    last = fee_lines(NOVEMBER, [on(STARTER, at(1)), on(GROWTH, last_second)])
    assert amounts(last) == [(LineKind.BASE_FEE, "49.00")]  # a second of each rounds to 0.00
    pricey = replace(GROWTH, monthly_price=Decimal("9999999.00"))
    last = fee_lines(NOVEMBER, [on(STARTER, at(1)), on(pricey, last_second)])
    assert [(line.kind, line.quantity, str(line.amount)) for line in last[1:]] == [
        (LineKind.PRORATION_CHARGE, 1, "3.86"),  # 9,999,999 / 2,592,000
    ]


def test_leap_february_and_december_into_january() -> None:
    february = BillingPeriod.parse("2024-02")  # 29 days: 2,505,600 s
    leap_day = datetime(2024, 2, 29, tzinfo=UTC)
    lines = fee_lines(february, [on(STARTER, february.start), on(GROWTH, leap_day)])
    assert lines[2].formula == (
        "199.00 x 86,400 s / 2,505,600 s = 6.862068965517241379310344828 → 6.86"
    )
    december = BillingPeriod.parse("2025-12")
    history = [on(STARTER, december.start), on(GROWTH, datetime(2025, 12, 31, 12, tzinfo=UTC))]
    assert [line.amount for line in fee_lines(december, history)] == [
        Decimal("49.00"),
        Decimal("-0.79"),  # 43,200 of 2,678,400 s
        Decimal("3.21"),
    ]
    january = december.next()
    assert amounts(fee_lines(january, history)) == [(LineKind.BASE_FEE, "199.00")]


def test_fractions_of_a_second_are_dropped_and_one_instant_keeps_the_order_of_changes() -> None:
    moment = at(10, 8, 30, 15) + timedelta(microseconds=999_999)
    assert whole_second(moment) == at(10, 8, 30, 15)
    subs = in_force(NOVEMBER, [on(STARTER, at(1)), on(GROWTH, moment), on(FREE, at(10, 8, 30, 15))])
    assert [(s.plan.slug, s.since) for s in subs] == [
        ("starter", at(1)),
        ("growth", at(10, 8, 30, 15)),
        ("internal-dev", at(10, 8, 30, 15)),
    ]
    # Later changes are listed in the order they were made, before the period too.
    assert [s.plan.slug for s in in_force(NOVEMBER, [on(GROWTH, at(1)), on(STARTER, at(1))])] == [
        "starter"
    ]


def test_a_status_change_that_keeps_the_terms_bills_nothing_and_free_plans_add_no_lines() -> None:
    history = [on(STARTER, at(1)), on(STARTER, at(5)), on(FREE, at(10)), on(FREE, at(11), False)]
    assert amounts(fee_lines(NOVEMBER, history)) == [
        (LineKind.BASE_FEE, "49.00"),
        (LineKind.PRORATION_CREDIT, "-34.30"),  # 21 of 30 days
    ]
    assert amounts(fee_lines(NOVEMBER, [on(FREE, at(1))])) == [(LineKind.BASE_FEE, "0.00")]


def test_usage_lines_follow_the_orgs_own_limits_and_bill_nothing_without_a_price() -> None:
    used = {"tokens": 3_000_000, "playbook_runs": 250, "seats": 3}
    lines = usage_lines(
        STARTER, DEFAULT_METRICS, used, {"tokens": 2_500_000, "playbook_runs": None}
    )
    assert amounts(lines) == [(LineKind.OVERAGE, "10.00")]  # 500,000 over its own 2.5M
    free_overage = replace(STARTER, metrics={"tokens": PlanMetric("tokens", 10)})
    assert usage_lines(free_overage, DEFAULT_METRICS, used, {}) == []
    # 1,500 units over at 0.02 per 1,000: a partial block is charged proportionally.
    assert usage_lines(STARTER, DEFAULT_METRICS, {"tokens": 1_001_500}, {})[0].amount == Decimal(
        "0.03"
    )
    half_cent = replace(STARTER, metrics={"tokens": PlanMetric("tokens", 0, Decimal("0.005"), 1)})
    assert usage_lines(half_cent, DEFAULT_METRICS, {"tokens": 1}, {})[0].amount == Decimal("0.01")


def test_an_invoice_is_in_one_currency() -> None:
    euros = replace(GROWTH, slug="growth-eur", currency="EUR")
    with pytest.raises(CurrencyChange) as changed:
        draft_invoice("acme", NOVEMBER, [on(STARTER, at(1)), on(euros, at(5))], (), {}, {})
    assert str(changed.value) == (
        "org 'acme' was billed in EUR, USD in 2026-11: its invoice cannot be made in one currency"
    )
    assert changed.value.details == {"org_id": "acme"}
    moved_in_trial = [on(STARTER, at(1), billable=False), on(euros, at(5))]
    assert draft_invoice("acme", NOVEMBER, moved_in_trial, (), {}, {}).currency == "EUR"


PLANS = st.sampled_from(
    [STARTER, GROWTH, FREE, replace(GROWTH, version=2, monthly_price=Decimal("1234.56"))]
)
PERIODS = st.sampled_from(
    [
        BillingPeriod.parse(label)
        for label in ("2024-02", "2025-02", "2026-04", "2025-12", "2026-01")
    ]
)


@st.composite
def histories(draw: st.DrawFn) -> tuple[BillingPeriod, list[Subscription]]:
    """A period and an org's history: a plan at its start, then changes at any second."""
    period = draw(PERIODS)
    length = (period.end - period.start) // timedelta(seconds=1)
    offsets = sorted(draw(st.lists(st.integers(1, length - 1), max_size=8)))
    subs = [on(draw(PLANS), period.start, draw(st.booleans()))]
    subs += [
        on(
            draw(PLANS),
            period.start + timedelta(seconds=s, microseconds=draw(st.integers(0, 999_999))),
            draw(st.booleans()),
        )
        for s in offsets
    ]
    return period, subs


@given(histories())
def test_any_sequence_of_changes_sums_to_the_time_weighted_price_within_a_cent_a_line(
    drawn: tuple[BillingPeriod, list[Subscription]],
) -> None:
    period, subs = drawn
    length = Decimal((period.end - period.start) // timedelta(seconds=1))
    bounds = [whole_second(s.since) for s in subs[1:]] + [period.end]
    weighted = sum(
        (
            sub.plan.monthly_price
            * Decimal((until - whole_second(sub.since)) // timedelta(seconds=1))
            / length
            for sub, until in zip(subs, bounds, strict=True)
            if sub.billable
        ),
        Decimal(0),
    )
    lines = fee_lines(period, subs)
    made = 1 + 2 * (len(subs) - 1)  # at most: lines that round to 0.00 are left out
    assert abs(sum(line.amount for line in lines) - weighted) <= Decimal("0.005") * made
    assert all(line.amount == line.amount.quantize(Decimal("0.01")) for line in lines)


@given(histories(), PLANS, st.booleans())
def test_changing_plan_and_changing_back_at_the_same_instant_nets_to_zero(
    drawn: tuple[BillingPeriod, list[Subscription]], other: Plan, billable: bool
) -> None:
    period, subs = drawn
    last = subs[-1]
    # At the instant of the last change (or a second into the period): after every change.
    moment = max(whole_second(last.since), period.start + timedelta(seconds=1))
    there_and_back = [*subs, on(other, moment, billable), on(last.plan, moment, last.billable)]
    before = sum(line.amount for line in fee_lines(period, subs))
    assert sum(line.amount for line in fee_lines(period, there_and_back)) == before


def test_a_change_adds_a_credit_and_a_charge_or_at_the_first_second_replaces_the_base_fee() -> None:
    history = [on(STARTER, at(1)), on(GROWTH, at(11))]
    lines = change_lines(NOVEMBER, history, on(STARTER, at(21)))
    assert amounts(lines) == [
        (LineKind.PRORATION_CREDIT, "-66.33"),  # 199.00 x 10 / 30 days
        (LineKind.PRORATION_CHARGE, "16.33"),
    ]
    assert change_lines(NOVEMBER, history, on(GROWTH, at(21))) == []  # what it is on
    # At the first second the change replaces the fee the period starts with: the lines are
    # that fee taken back and the new one, adding up to what the change costs.
    first = change_lines(NOVEMBER, [on(STARTER, at(1) - DAY)], on(GROWTH, at(1)))
    assert amounts(first) == [(LineKind.PRORATION_CREDIT, "-49.00"), (LineKind.BASE_FEE, "199.00")]
    assert first[0].description == "Starter (v1), 2026-11, replaced"
    assert first[0].formula == "49.00, credited → -49.00"
    assert sum(line.amount for line in first) == sum(
        line.amount for line in fee_lines(NOVEMBER, [on(GROWTH, at(1))])
    ) - sum(line.amount for line in fee_lines(NOVEMBER, [on(STARTER, at(1) - DAY)]))
    from_trial = change_lines(
        NOVEMBER, [on(STARTER, at(1) - DAY, billable=False)], on(GROWTH, at(1))
    )
    assert amounts(from_trial) == [(LineKind.BASE_FEE, "199.00")]  # nothing to take back
    start_trial = change_lines(NOVEMBER, [on(STARTER, at(1), billable=False)], on(STARTER, at(6)))
    assert amounts(start_trial) == [(LineKind.PRORATION_CHARGE, "40.83")]  # 25 of 30 days


TOKENS = DEFAULT_METRICS[0]


def late(billed: int, late: int, **changes: object) -> LateUsage:
    item = LateUsage(
        period=BillingPeriod.parse("2026-10"),
        metric=TOKENS,
        billed=billed,
        late=late,
        included=1_000_000,
        plan=STARTER,
    )
    return replace(item, **changes)  # type: ignore[arg-type]


def test_late_usage_bills_what_the_period_costs_now_less_what_was_billed_each_rounded() -> None:
    [line] = adjustment_lines([late(1_200_000, 100_000)])
    assert (line.kind, str(line.amount), line.quantity, line.metric) == (
        LineKind.ADJUSTMENT,
        "2.00",
        100_000,
        "tokens",
    )
    assert line.adjusts == BillingPeriod.parse("2026-10")
    assert line.description == (
        "LLM tokens for 2026-10, received after it was invoiced: 100,000 tokens"
    )
    assert line.formula == (
        "(1,300,000 - 1,000,000) x 0.02 / 1,000 = 6 → 6.00, less 4.00 billed → 2.00"
    )
    # Under the limit before, over it after: only the part beyond is billed.
    assert str(adjustment_lines([late(900_000, 150_000)])[0].amount) == "1.00"
    # 400 then 700 tokens over cost 0.008 → 0.01 and 0.014 → 0.01: nothing more to bill.
    assert adjustment_lines([late(1_000_400, 300)]) == []
    # 250 over cost 0.005 → 0.01 (half up); 100 more, 0.007 → 0.01; 500 more, 0.015 → 0.02.
    assert adjustment_lines([late(1_000_250, 100)]) == []
    assert str(adjustment_lines([late(1_000_250, 500)])[0].amount) == "0.01"
    for quiet in (
        late(2_000_000, 5, included=None),  # unlimited
        late(2_000_000, 5, billable=False),  # a trial month bills no usage
        late(900_000, 50_000),  # still within the limit
        late(2_000_000, 5, plan=replace(STARTER, metrics={})),  # no overage price
    ):
        assert adjustment_lines([quiet]) == []


def test_a_period_closes_its_grace_after_it_ends() -> None:
    assert closes_at(NOVEMBER, timedelta(hours=24)) == datetime(2026, 12, 2, tzinfo=UTC)
    assert closes_at(NOVEMBER, timedelta(0)) == NOVEMBER.end
    day = timedelta(hours=24)
    require_closed(NOVEMBER, day, datetime(2026, 12, 2, tzinfo=UTC))  # closed: no refusal
    with pytest.raises(PeriodNotClosed) as early:
        require_closed(NOVEMBER, day, datetime(2026, 12, 1, 23, 59, tzinfo=UTC), ": so there")
    assert str(early.value) == (
        "2026-11 closes at 2026-12-02 00:00 UTC (BILLING_LATE_EVENT_GRACE_HOURS after it "
        "ends): so there"
    )
    assert early.value.details == {"period": "2026-11"}
    with pytest.raises(PeriodNotClosed, match=r"after it ends\)$"):
        require_closed(NOVEMBER, day, NOVEMBER.end)


def test_a_draft_ends_with_the_adjustments_of_earlier_periods() -> None:
    draft = draft_invoice(
        "acme",
        NOVEMBER,
        [on(STARTER, at(1))],
        DEFAULT_METRICS,
        {},
        LIMITS,
        [late(1_200_000, 100_000)],
    )
    assert [line.kind for line in draft.lines] == [LineKind.BASE_FEE, LineKind.ADJUSTMENT]
    assert (draft.total, draft.plan, draft.bills_usage) == (Decimal("51.00"), STARTER, True)
    trial = draft_invoice("acme", NOVEMBER, [on(STARTER, at(1), False)], DEFAULT_METRICS, {}, {})
    assert trial.bills_usage is False


def test_coupons_are_lines_of_their_own_after_those_they_take_from() -> None:
    half_fee = Coupon(
        "HALF", "Half the fee", Kind.PERCENT, Decimal("50"), Duration.FOREVER, applies_to=(FEE,)
    )
    tokens_off = Coupon(
        "TOK5",
        "Tokens",
        Kind.AMOUNT,
        Decimal("5.00"),
        Duration.ONCE,
        currency="USD",
        applies_to=("tokens",),
    )
    draft = draft_invoice(
        "acme",
        NOVEMBER,
        [on(STARTER, at(1))],
        DEFAULT_METRICS,
        {"tokens": 1_500_000},
        LIMITS,
        [late(1_200_000, 100_000)],
        [half_fee, tokens_off],
    )
    assert amounts(list(draft.lines)) == [
        (LineKind.BASE_FEE, "49.00"),
        (LineKind.OVERAGE, "10.00"),
        (LineKind.ADJUSTMENT, "2.00"),
        (LineKind.DISCOUNT, "-24.50"),
        (LineKind.DISCOUNT, "-5.00"),  # from the 12.00 of tokens, adjustment included
    ]
    first = draft.lines[3]
    assert first == InvoiceLine(
        kind=LineKind.DISCOUNT,
        description="Half the fee (HALF): 50% off",
        amount=Decimal("-24.50"),
        formula="50% of 49.00 = 24.5 → -24.50",
        plan_slug="starter",
        plan_version=STARTER.version,
        coupon="HALF",
    )
    assert draft.lines[4].description == "Tokens (TOK5): 5.00 USD off"
    assert draft.total == Decimal("31.50")
    applied = credit_applied_line(Decimal("5.00"), Decimal("9.00"), STARTER)
    assert discount_lines([applied], [half_fee, replace(half_fee, applies_to=None)], STARTER) == []
    on_growth = replace(half_fee, plans=("growth",))
    assert discount_lines(list(draft.lines[:3]), [on_growth], STARTER) == []
    on_starter = replace(half_fee, plans=("starter",))
    assert len(discount_lines(list(draft.lines[:3]), [on_starter], STARTER)) == 1


def test_every_line_names_its_plan_and_prices_and_a_quiet_metric_stops_no_other() -> None:
    invoice = draft_invoice(
        "acme",
        NOVEMBER,
        [on(STARTER, at(1)), on(GROWTH, at(16))],
        DEFAULT_METRICS,
        {"playbook_runs": 1_003, "seats": 12},  # tokens quiet; runs and seats over Growth's
        {"tokens": 0, "playbook_runs": 1_000, "seats": 10},
    )
    assert invoice.org_id == "acme"
    assert [
        (line.plan_slug, line.plan_version, str(line.unit_price)) for line in invoice.lines
    ] == [
        ("starter", 1, "49.00"),
        ("starter", 1, "49.00"),
        ("growth", 1, "199.00"),
        ("growth", 1, "0.20"),
        ("growth", 1, "12.00"),
    ]
    runs = invoice.lines[3]
    assert runs.formula == "(1,003 - 1,000) x 0.20 = 0.6 → 0.60"  # no "per 1" for unit 1
    assert invoice.period == NOVEMBER
    items = [
        late(1_200_000, 5, billable=False),
        late(900_000, 1),
        late(1_200_000, 100_000, plan=replace(STARTER, version=3)),
    ]
    [adjustment] = adjustment_lines(items)  # the quiet ones first stop no other
    assert (adjustment.plan_slug, adjustment.plan_version) == ("starter", 3)
    assert (str(adjustment.unit_price), adjustment.unit_size) == ("0.02", 1_000)


def test_a_periods_usage_from_its_billed_lines_is_a_sum_a_maxs_highest_or_a_latests_last() -> None:
    peak = Metric("peak", "Peak", "workers", Aggregation.MAX)
    gauge = Metric("gauge", "Storage", "GB", Aggregation.LATEST)
    tokens = Metric("tokens", "Tokens", "tokens")
    may, april = BillingPeriod.starting(date(2026, 5, 1)), date(2026, 4, 1)
    billed = {
        (may.key, "peak"): Tally(30, 3, 20),
        (may.key, "tokens"): Tally(30, 3, 20),
        (may.key, "gauge"): Tally(30, 3, 20, Position(datetime(2026, 5, 3, tzinfo=UTC), "k"), 6),
        (may.key, "gone"): Tally(5, 1, 5),  # not in the catalogue: as summed
        (april, "tokens"): Tally(99, 9, 50),  # another period
    }
    catalogue = {"peak": peak, "tokens": tokens, "gauge": gauge}
    assert usage_of(may, billed, catalogue) == {"peak": 20, "tokens": 30, "gauge": 6, "gone": 5}


def test_an_invoice_whose_line_or_total_is_beyond_the_amount_bound_says_which() -> None:
    def draft(*amounts: str) -> InvoiceDraft:
        lines = tuple(
            InvoiceLine(LineKind.OVERAGE, f"line {n}", Decimal(a), "f", "starter", 1)
            for n, a in enumerate(amounts, 1)
        )
        return InvoiceDraft("acme", BillingPeriod.parse("2026-04"), "USD", lines, STARTER)

    assert within_bounds(MAX_AMOUNT)
    assert within_bounds(-MAX_AMOUNT)
    assert not within_bounds(MAX_AMOUNT + Decimal("0.01"))
    assert not within_bounds(-MAX_AMOUNT - Decimal("0.01"))
    assert draft("999999999999.99", "-999999999999.99").out_of_bounds() is None
    assert draft("-1000000000000.00").out_of_bounds() == (
        "line 1 (line 1) comes to -1,000,000,000,000.00 USD, beyond the 999,999,999,999.99 "
        "an amount may be"
    )
    assert draft("1.00", "1000000000000.00", "-2000000000000.00").out_of_bounds() == (
        "line 2 (line 2) comes to 1,000,000,000,000.00 USD, beyond the 999,999,999,999.99 "
        "an amount may be"
    )
    assert draft("600000000000.00", "400000000000.00").out_of_bounds() == (
        "the total comes to 1,000,000,000,000.00 USD, beyond the 999,999,999,999.99 an amount "
        "may be"
    )


def line(kind: LineKind, amount: str) -> InvoiceLine:
    return InvoiceLine(kind, kind.value, Decimal(amount), "", "starter", 1)


def draft(*lines: InvoiceLine, bills_usage: bool = True) -> InvoiceDraft:
    return InvoiceDraft("acme", NOVEMBER, "USD", lines, STARTER, bills_usage=bills_usage)


def test_an_estimate_says_why_it_is_not_the_price_plus_the_overage() -> None:
    price, overage = Decimal("49.00"), Decimal("4.00")
    fee, usage = line(LineKind.BASE_FEE, "49.00"), line(LineKind.OVERAGE, "4.00")
    assert estimate_notes(draft(fee, usage), price, overage) == ()  # the same figure
    assert estimate_notes(draft(bills_usage=False), price, overage) == (
        "not billed: the org has been in trial (or canceled) all month so far",
    )
    changed = draft(
        line(LineKind.BASE_FEE, "20.00"), line(LineKind.PRORATION_CHARGE, "30.00"), usage
    )
    assert estimate_notes(changed, price, overage) == (
        "the subscription changed this month (its plan or status): its fees are prorated to "
        "the second",
    )
    credited = draft(fee, line(LineKind.PRORATION_CREDIT, "-10.00"), usage)
    assert estimate_notes(credited, price, overage)[0].startswith("the subscription changed")
    late_start = draft(line(LineKind.BASE_FEE, "26.08"), usage)
    assert estimate_notes(late_start, price, overage) == (
        "the plan's fee covers only the part of the month it is billed for",
    )
    late_usage = draft(fee, usage, line(LineKind.ADJUSTMENT, "2.00"))
    assert estimate_notes(late_usage, price, overage) == (
        "it adjusts usage of an earlier month that arrived late",
    )
    both = draft(line(LineKind.BASE_FEE, "26.08"), usage, line(LineKind.ADJUSTMENT, "2.00"))
    assert len(estimate_notes(both, price, overage)) == 2
    seats = draft(fee, usage, line(LineKind.SEATS, "15.00"))  # the summary's overage lacks it
    assert estimate_notes(seats, price, overage) == ("the upcoming invoice's lines say how",)
    assert Estimate(Decimal("1.00")) == Estimate(Decimal("1.00"), None, ())


def test_a_formula_rounds_its_long_quotient_for_people_and_keeps_short_ones() -> None:
    long = "49.00 x 2,506,943 s / 2,678,400 s = 45.86327919653524492234169654 → 45.86"
    assert formula_for_people(long) == "49.00 x 2,506,943 s / 2,678,400 s ≈ 45.8633 → 45.86"
    big = "x = 12,345.678901234 → 12,345.68"
    assert formula_for_people(big) == "x ≈ 12,345.6789 → 12,345.68"
    half = "a = 0.1234500 → 0.12"
    assert formula_for_people(half) == "a ≈ 0.1235 → 0.12"  # half up, not to even
    for kept in (
        "(1,203,127 - 1,000,000) x 0.02 / 1,000 = 4.06254 → 4.06",  # six places or fewer
        "a = 0.123456 → 0.12",
        "49.00 → 49.00",
        "",
    ):
        assert formula_for_people(kept) == kept


def test_a_credit_balance_applied_is_a_line_that_takes_it_off() -> None:
    line = credit_applied_line(Decimal("10.00"), Decimal("49.00"), STARTER)
    assert (line.kind, line.amount, line.description) == (
        LineKind.CREDIT_APPLIED,
        Decimal("-10.00"),
        "Credit balance applied",
    )
    assert line.formula == "10.00 of the 49.00 held → -10.00"
    assert (line.plan_slug, line.plan_version, line.metric) == (STARTER.slug, STARTER.version, None)
    assert credit_applied_line(Decimal("49"), Decimal("49"), STARTER).amount == Decimal(-49)
    for applied, held in (("0", "1"), ("-1", "1"), ("1.01", "1.00")):
        with pytest.raises(ValueError, match=f"cannot apply {applied} of a balance of {held}"):
            credit_applied_line(Decimal(applied), Decimal(held), STARTER)


def test_a_backtest_adds_up_what_was_invoiced_what_the_draft_makes_and_the_difference() -> None:
    def line(kind: LineKind, amount: str) -> InvoiceLine:
        return InvoiceLine(kind, "a line", Decimal(amount), "", "starter", 1)

    def draft(*amounts: str) -> InvoiceDraft:
        lines = tuple(line(LineKind.OVERAGE, a) for a in amounts)
        return InvoiceDraft("acme", NOVEMBER, "USD", lines, STARTER)

    cheaper = BacktestRow("acme", "INV-000001", 2, Decimal("59.00"), draft("49.00", "5.00"))
    dearer = BacktestRow("zeta", "INV-000002", 2, Decimal("49.00"), draft("49.00", "0.10"))
    assert (cheaper.difference, dearer.difference) == (Decimal("-5.00"), Decimal("0.10"))
    both = Backtest("starter", NOVEMBER, "USD", (cheaper, dearer))
    assert (both.invoiced, both.drafted, both.difference) == (
        Decimal("108.00"),
        Decimal("103.10"),
        Decimal("-4.90"),
    )
    none = Backtest("starter", NOVEMBER, "USD", ())
    assert (str(none.invoiced), str(none.drafted), str(none.difference)) == ("0.00",) * 3

    stored = [
        StoredLine(
            n, kind.value, "", Decimal(a), "", "starter", 1, NOVEMBER.key, None, 0, ZERO, 1, None
        )
        for n, (kind, a) in enumerate(
            [
                (LineKind.BASE_FEE, "49.00"),
                (LineKind.CREDIT_APPLIED, "-9.00"),
                (LineKind.CREDIT_APPLIED, "-1.50"),
            ],
            1,
        )
    ]
    invoice = StoredInvoice(
        "inv",
        "acme",
        NOVEMBER.key,
        "INV-000003",
        3,
        "open",
        "USD",
        Decimal("49.00"),
        Decimal("38.50"),
        "starter",
        1,
        True,
        NOVEMBER.end,
        None,
        None,
        None,
        None,
        lines=tuple(stored),
    )
    assert invoice.balance_applied == Decimal("10.50")
    assert replace(invoice, lines=tuple(stored[:1])).balance_applied == ZERO


GRADUATED_TOKENS = PlanMetric(
    "tokens",
    1_000_000,
    overage_unit_size=1_000,
    price_model=PriceModel.GRADUATED,
    tiers=(
        Tier(500_000, Decimal("0.02")),
        Tier(None, Decimal("0.01"), Decimal("5.00")),
    ),
)


def tokens_on(terms: PlanMetric) -> Plan:
    return replace(STARTER, metrics={**STARTER.metrics, "tokens": terms})


def test_each_price_model_bills_one_line_whose_formula_is_its_arithmetic() -> None:
    used = {"tokens": 2_250_000}
    [graduated] = usage_lines(tokens_on(GRADUATED_TOKENS), [TOKENS], used, {})
    # 500,000 at 0.02 / 1,000 = 10, 750,000 at 0.01 / 1,000 = 7.5, and the second tier's 5.00
    assert (graduated.kind, str(graduated.amount), graduated.quantity) == (
        LineKind.OVERAGE,
        "22.50",
        1_250_000,
    )
    assert graduated.formula == (
        "(2,250,000 - 1,000,000) = 1,250,000: 500,000 x 0.02 / 1,000 + 750,000 x 0.01 / 1,000"
        " + 5.00 = 22.5 → 22.50"
    )
    assert (str(graduated.unit_price), graduated.unit_size) == ("0.01", 1_000)
    volume = replace(GRADUATED_TOKENS, price_model=PriceModel.VOLUME)
    [line] = usage_lines(tokens_on(volume), [TOKENS], used, {})
    # all 1,250,000 at the second tier's 0.01 / 1,000, and its fee
    assert (str(line.amount), str(line.unit_price)) == ("17.50", "0.01")
    assert (
        line.formula
        == "(2,250,000 - 1,000,000) = 1,250,000: 1,250,000 x 0.01 / 1,000 + 5.00 = 17.5 → 17.50"
    )
    [line] = usage_lines(tokens_on(volume), [TOKENS], {"tokens": 1_400_000}, {})
    assert (str(line.amount), str(line.unit_price)) == ("8.00", "0.02")  # 400,000 at 0.02
    package = PlanMetric(
        "tokens", 1_000_000, Decimal("5.00"), 1_000_000, price_model=PriceModel.PACKAGE
    )
    [line] = usage_lines(tokens_on(package), [TOKENS], used, {})
    assert (str(line.amount), str(line.unit_price), line.unit_size) == ("10.00", "5.00", 1_000_000)
    assert (
        line.formula
        == "(2,250,000 - 1,000,000) = 1,250,000: ⌈1,250,000 / 1,000,000⌉ = 2 x 5.00 = 10 → 10.00"
    )
    # Tiers start beyond the org's own limit, as a per-unit price does.
    [own] = usage_lines(tokens_on(GRADUATED_TOKENS), [TOKENS], used, {"tokens": 2_000_000})
    assert (str(own.amount), own.quantity) == ("5.00", 250_000)
    assert usage_lines(tokens_on(GRADUATED_TOKENS), [TOKENS], {"tokens": 1_000_000}, {}) == []
    free = replace(volume, tiers=(Tier(10, Decimal(0)), Tier(None, Decimal(0))))
    assert usage_lines(tokens_on(free), [TOKENS], used, {}) == []


def test_late_usage_on_a_tiered_price_bills_what_the_tiers_make_of_the_whole() -> None:
    plan = tokens_on(GRADUATED_TOKENS)
    # 1,400,000 billed: 400,000 over, 8.00. 200,000 late: 600,000 over,
    # 500,000 x 0.02 / 1,000 + 100,000 x 0.01 / 1,000 + 5.00 = 16.00: 8.00 more.
    [line] = adjustment_lines([late(1_400_000, 200_000, plan=plan)])
    assert (str(line.amount), line.quantity, str(line.unit_price)) == ("8.00", 200_000, "0.01")
    assert line.formula == (
        "(1,600,000 - 1,000,000) = 600,000: 500,000 x 0.02 / 1,000 + 100,000 x 0.01 / 1,000"
        " + 5.00 = 16 → 16.00, less 8.00 billed → 8.00"
    )
    package = PlanMetric(
        "tokens", 1_000_000, Decimal("5.00"), 1_000_000, price_model=PriceModel.PACKAGE
    )
    # Within the package already paid for: nothing more.
    assert adjustment_lines([late(1_100_000, 500_000, plan=tokens_on(package))]) == []


# Prices per dimension

MINI_TIERS = (Tier(100_000, Decimal("0.02")), Tier(None, Decimal("0.01"), Decimal("1.00")))
PER_MODEL_TOKENS = PlanMetric(
    "tokens",
    100_000,
    Decimal("0.05"),
    1_000,
    dimension=Dimension(
        "model",
        (
            ValuePrice("gpt-5", Price(unit_price=Decimal("0.10"), unit_size=1_000)),
            ValuePrice(
                "gpt-5-mini", Price(PriceModel.GRADUATED, unit_size=1_000, tiers=MINI_TIERS)
            ),
        ),
    ),
)


def test_a_metric_priced_per_value_bills_a_line_per_value_beyond_the_shared_included() -> None:
    plan = tokens_on(PER_MODEL_TOKENS)
    split = {"tokens": {"gpt-5": 60_000, "gpt-5-mini": 250_000}}
    lines = usage_lines(plan, [TOKENS], {"tokens": 360_000}, {}, split)
    # The 100,000 included cover gpt-5's 60,000, then 40,000 of gpt-5-mini's 250,000.
    assert [
        (line.description, line.amount, line.formula, line.quantity, line.dimension_value)
        for line in lines
    ] == [
        (
            "LLM tokens (model gpt-5-mini): 250,000 tokens, 40,000 of the 100,000 included",
            Decimal("4.10"),
            "(250,000 - 40,000) = 210,000: 100,000 x 0.02 / 1,000 + 110,000 x 0.01 / 1,000"
            " + 1.00 = 4.1 → 4.10",
            210_000,
            "gpt-5-mini",
        ),
        (
            "LLM tokens (other model values): 50,000 tokens, none of the included",
            Decimal("2.50"),
            "(50,000 - 0) x 0.05 / 1,000 = 2.5 → 2.50",
            50_000,
            None,
        ),
    ]
    assert {(line.dimension, line.unit_price, line.unit_size) for line in lines} == {
        ("model", Decimal("0.01"), 1_000),
        ("model", Decimal("0.05"), 1_000),
    }
    # An org's own limit is shared the same way; an unlimited one bills nothing.
    [rest] = usage_lines(plan, [TOKENS], {"tokens": 360_000}, {"tokens": 320_000}, split)
    assert (rest.description, rest.amount) == (
        "LLM tokens (other model values): 50,000 tokens, 10,000 of the 320,000 included",
        Decimal("2.00"),
    )
    assert usage_lines(plan, [TOKENS], {"tokens": 360_000}, {"tokens": None}, split) == []
    # A free value bills no line; without a split all of it is the other values'.
    free = replace(
        PER_MODEL_TOKENS,
        dimension=Dimension("model", (ValuePrice("gpt-5-mini", Price()),)),
    )
    [only] = usage_lines(tokens_on(free), [TOKENS], {"tokens": 360_000}, {}, split)
    # gpt-5 is not listed here: its 60,000 are the other values'; the included went to mini.
    assert (only.dimension_value, only.quantity) == (None, 110_000)
    [whole] = usage_lines(plan, [TOKENS], {"tokens": 360_000}, {})
    assert (whole.dimension_value, whole.quantity, whole.amount) == (
        None,
        260_000,
        Decimal("13.00"),
    )
    everything_free = replace(free, overage_unit_price=Decimal(0))
    assert usage_lines(tokens_on(everything_free), [TOKENS], {"tokens": 9**9}, {}, split) == []


def test_late_usage_of_one_value_may_reprice_another_whose_included_units_it_takes() -> None:
    plan = tokens_on(PER_MODEL_TOKENS)
    item = late(
        360_000,
        20_000,
        plan=plan,
        included=100_000,
        billed_split={"gpt-5": 60_000, "gpt-5-mini": 250_000},
        late_split={"gpt-5": 20_000},
    )
    [line] = adjustment_lines([item])
    # gpt-5 now takes 80,000 of the included, gpt-5-mini 20,000: 230,000 of it over,
    # 2.00 + 1.30 + 1.00 = 4.30 against the 4.10 billed.
    assert (line.dimension_value, line.amount, line.quantity) == (
        "gpt-5-mini",
        Decimal("0.20"),
        20_000,
    )
    assert line.description == (
        "LLM tokens (model gpt-5-mini) for 2026-10, with usage received after it was "
        "invoiced: 230,000 tokens over the included, 210,000 before"
    )
    assert line.formula == (
        "(250,000 - 20,000) = 230,000: 100,000 x 0.02 / 1,000 + 130,000 x 0.01 / 1,000"
        " + 1.00 = 4.3 → 4.30, less 4.10 billed → 0.20"
    )
    assert (line.kind, line.adjusts, line.dimension) == (
        LineKind.ADJUSTMENT,
        BillingPeriod.parse("2026-10"),
        "model",
    )
    # Late usage of the other values bills on their own line.
    [rest] = adjustment_lines([replace(item, late_split={})])
    assert (rest.dimension_value, rest.amount, rest.quantity) == (None, Decimal("1.00"), 20_000)


SPLIT_VALUES = st.dictionaries(st.sampled_from(["gpt-5", "gpt-5-mini"]), st.integers(0, 10**7))


@given(
    SPLIT_VALUES, st.integers(0, 10**7), SPLIT_VALUES, st.integers(0, 10**7), st.integers(0, 10**7)
)
def test_a_month_per_value_billed_in_two_parts_adds_up_line_by_line_to_the_whole(
    first: dict[str, int], first_rest: int, then: dict[str, int], then_rest: int, included: int
) -> None:
    """What late usage relies on, per value: the lines of a first part, then the
    adjustments for the rest, add up to the lines of the whole, value by value."""
    plan = tokens_on(replace(PER_MODEL_TOKENS, included_quantity=included))
    billed = sum(first.values()) + first_rest
    added = sum(then.values()) + then_rest
    whole_split = {v: first.get(v, 0) + then.get(v, 0) for v in {*first, *then}}
    before = usage_lines(plan, [TOKENS], {"tokens": billed}, {}, {"tokens": first})
    adjustments = adjustment_lines(
        [
            late(
                billed,
                added,
                plan=plan,
                included=included,
                billed_split=first,
                late_split=then,
            )
        ]
    )
    whole = usage_lines(plan, [TOKENS], {"tokens": billed + added}, {}, {"tokens": whole_split})

    def by_value(lines: list[InvoiceLine]) -> dict[str | None, Decimal]:
        totals: dict[str | None, Decimal] = {}
        for line in lines:
            totals[line.dimension_value] = totals.get(line.dimension_value, ZERO) + line.amount
        return totals

    summed = by_value(before)
    for value, amount in by_value(adjustments).items():
        summed[value] = summed.get(value, ZERO) + amount
    assert {k: v for k, v in summed.items() if v} == {k: v for k, v in by_value(whole).items() if v}
    assert all(line.amount > 0 for line in adjustments)  # per unit and graduated: never less


def test_a_usage_line_bills_the_units_over_its_exact_cost_rounded_half_up_once() -> None:
    [line] = usage_lines(STARTER, [TOKENS], {"tokens": 1_001_500}, {})
    assert (line.quantity, line.amount) == (1_500, Decimal("0.03"))
    [half] = usage_lines(STARTER, [TOKENS], {"tokens": 1_000_250}, {})
    assert (half.amount, half.formula) == (
        Decimal("0.01"),
        "(1,000,250 - 1,000,000) x 0.02 / 1,000 = 0.005 → 0.01",
    )
    assert usage_lines(STARTER, [TOKENS], {"tokens": 999_999}, {}) == []
    assert usage_lines(STARTER, [TOKENS], {"tokens": 1_000_000}, {}) == []
    assert usage_lines(STARTER, [TOKENS], {"tokens": 10**9}, {"tokens": None}) == []
    [one] = usage_lines(STARTER, [TOKENS], {"tokens": 1_000_001}, {})
    assert (one.quantity, one.amount) == (1, Decimal("0.00"))


def test_a_draft_bills_each_value_of_a_metric_priced_per_value_from_its_split() -> None:
    plan = tokens_on(PER_MODEL_TOKENS)
    split = {"tokens": {"gpt-5": 60_000, "gpt-5-mini": 250_000}}
    draft = draft_invoice(
        "acme", NOVEMBER, [on(plan, at(1))], [TOKENS], {"tokens": 360_000}, {}, split=split
    )
    assert [(line.dimension_value, line.amount) for line in draft.lines[1:]] == [
        ("gpt-5-mini", Decimal("4.10")),
        (None, Decimal("2.50")),
    ]


def test_late_usage_of_a_value_not_billed_before_is_priced_as_its_own() -> None:
    each = Dimension(
        "model",
        (
            ValuePrice("gpt-5", Price(unit_price=Decimal("1.00"))),
            ValuePrice("gpt-5-mini", Price(unit_price=Decimal("0.50"))),
        ),
    )
    plan = tokens_on(PlanMetric("tokens", 0, Decimal("0.10"), dimension=each))
    item = late(
        12, 5, plan=plan, included=0, billed_split={"gpt-5": 10}, late_split={"gpt-5-mini": 5}
    )
    [line] = adjustment_lines([item])
    assert (line.dimension_value, line.quantity, line.amount) == ("gpt-5-mini", 5, Decimal("2.50"))
