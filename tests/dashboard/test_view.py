from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from billing_kernel.alerts.rules import AlertFacts, AlertState, alert_event
from billing_kernel.common.periods import BillingPeriod
from billing_kernel.dashboard.view import (
    CHART_HEIGHT,
    CHART_WIDTH,
    AxisTick,
    InvoiceRow,
    Level,
    LimitState,
    axis_ticks,
    bar_width,
    card_text,
    chart_bars,
    compact,
    count,
    day_month,
    discount_text,
    event_text,
    exact_compact,
    feature_rows,
    invoice_rows,
    level,
    limit_state,
    long_day,
    money,
    notices,
    overage_lines,
    payment_state,
    period_span,
    policy_text,
    shown_and_folded,
    split_lines,
    without_version_tags,
)
from billing_kernel.discounts.rules import FEE, Coupon, Duration, Kind, Redemption
from billing_kernel.events.rules import Event, EventType
from billing_kernel.invoices.rules import StoredLine
from billing_kernel.metrics.rules import Metric
from billing_kernel.payments.rules import PaymentStatus
from billing_kernel.plans.rules import SOFT, Enforcement, PlanMetric, Policy
from billing_kernel.pricing.rules import PriceModel, Tier
from billing_kernel.quota.rules import Reason, Standing, decide
from billing_kernel.summary.rules import MetricUsage, metric_usage
from tests.seeded import GROWTH, STARTER


@pytest.mark.parametrize(
    ("percent", "expected"),
    [
        ("0", Level.OK),
        ("79.9", Level.OK),
        ("80", Level.NEAR),
        ("99.9", Level.NEAR),
        ("100", Level.OVER),
        ("150", Level.OVER),
    ],
)
def test_colour_thresholds(percent: str, expected: Level) -> None:
    assert level(Decimal(percent)) is expected


def test_unlimited_or_zero_limits_have_no_bar() -> None:
    assert level(None) is None
    assert bar_width(None) == "0%"


def test_each_level_has_a_word_so_colour_is_not_the_only_signal() -> None:
    assert [lvl.word for lvl in Level] == ["within limit", "near limit", "at or over limit"]


def test_bars_are_capped_at_full_width() -> None:
    assert bar_width(Decimal("150.0")) == "100%"
    assert bar_width(Decimal("84.5")) == "84.5%"


@pytest.mark.parametrize(
    ("value", "full", "short"),
    [
        (0, "0", "0"),
        (950, "950", "950"),
        (999, "999", "999"),
        (1_000, "1,000", "1K"),
        (1_000_000, "1,000,000", "1M"),
        (10**12, "1,000,000,000,000", "1T"),
        (-2_500, "-2,500", "-2.5K"),
        (1_234, "1,234", "1.2K"),
        (1_234_567, "1,234,567", "1.2M"),
        (10_000_000, "10,000,000", "10M"),
        (2_500_000_000, "2,500,000,000", "2.5B"),
    ],
)
def test_numbers_for_people(value: int, full: str, short: str) -> None:
    assert (count(value), compact(value)) == (full, short)


def test_money_and_dates() -> None:
    assert money(Decimal("49.00"), "USD") == "$49.00"
    assert money(Decimal("1234.5"), "EUR") == "€1,234.50"
    assert money(Decimal("-17.39"), "USD") == "-$17.39"
    assert money(Decimal("-2"), "CHF") == "-CHF 2.00"
    assert money(Decimal("12"), "CHF") == "CHF 12.00"
    november = BillingPeriod.starting(date(2026, 11, 1))
    assert period_span(november) == "1\N{EN DASH}30 November 2026"
    assert period_span(BillingPeriod.starting(date(2024, 2, 1))) == "1\N{EN DASH}29 February 2024"
    assert day_month(date(2026, 11, 3)) == "3 Nov"
    assert long_day(november.end.date()) == "1 December 2026"


def test_a_tiered_price_is_shown_a_tier_a_line_and_any_other_in_one() -> None:
    tiers = (Tier(80_000_000, Decimal("0.01")), Tier(None, Decimal("0.008")))
    graduated = PlanMetric(
        "tokens", 10, overage_unit_size=1_000, price_model=PriceModel.GRADUATED, tiers=tiers
    )
    assert overage_lines(graduated, "USD") == [
        "then graduated:",
        "$0.01 per 1,000 up to 80M",
        "$0.008 per 1,000 beyond",
    ]
    volume = replace(graduated, price_model=PriceModel.VOLUME)
    assert overage_lines(volume, "USD")[:2] == ["then volume:", "all at $0.01 per 1,000 up to 80M"]
    assert overage_lines(PlanMetric("seats", 3, Decimal("15"), 1), "USD") == ["then $15.00 each"]
    free = replace(graduated, tiers=(Tier(1, Decimal(0)), Tier(None, Decimal(0))))
    assert overage_lines(free, "USD") == ["no charge beyond"]
    assert overage_lines(replace(graduated, included_quantity=None), "USD") == []


def test_the_plans_features_are_set_side_by_side_a_row_each() -> None:
    starter = replace(STARTER, features={"sso": False, "max_projects": 3})
    growth = replace(GROWTH, features={"sso": True, "support": "priority"})
    assert feature_rows([starter, growth]) == [
        ("max projects", ["3", "—"]),
        ("sso", ["no", "yes"]),
        ("support", ["—", "priority"]),
    ]
    assert feature_rows([STARTER, GROWTH]) == []


def test_where_a_price_changes_is_written_short_only_where_that_is_exact() -> None:
    assert [exact_compact(n) for n in (950, 1_500, 80_000_000, 1_234_567, 10**12, 1_001)] == [
        "950",
        "1.5K",
        "80M",
        "1,234,567",
        "1T",
        "1,001",
    ]


def test_overage_lines_say_what_a_plan_charges_beyond_what_it_includes() -> None:
    assert overage_lines(PlanMetric("tokens", 1_000_000, Decimal("0.02"), 1_000), "USD") == [
        "then $0.02 per 1,000"
    ]
    assert overage_lines(PlanMetric("seats", 3, Decimal("15.00"), 1), "EUR") == ["then €15.00 each"]
    assert overage_lines(PlanMetric("runs", 0, Decimal("0.015"), 1), "USD") == ["then $0.015 each"]
    assert overage_lines(PlanMetric("runs", 10, Decimal("0"), 1), "USD") == ["no charge beyond"]
    assert overage_lines(PlanMetric("runs", None, Decimal("1"), 1), "USD") == []
    tiers = (Tier(80_000_000, Decimal("0.01")), Tier(None, Decimal("0.008"), Decimal("5")))
    graduated = PlanMetric(
        "tokens", 10, overage_unit_size=1_000, price_model=PriceModel.GRADUATED, tiers=tiers
    )
    assert overage_lines(graduated, "EUR") == [
        "then graduated:",
        "€0.01 per 1,000 up to 80M",
        "€0.008 per 1,000 + €5.00 beyond",
    ]
    package = PlanMetric("runs", 10, Decimal("2.5"), 100, price_model=PriceModel.PACKAGE)
    assert overage_lines(package, "USD") == ["then $2.50 per 100, a part charged whole"]
    free = replace(graduated, tiers=(Tier(1, Decimal(0)), Tier(None, Decimal(0))))
    assert overage_lines(free, "USD") == ["no charge beyond"]


def test_chart_bars_scale_to_the_busiest_day() -> None:
    days = [(date(2026, 11, 1), 0), (date(2026, 11, 2), 50), (date(2026, 11, 3), 100)]
    bars = chart_bars(days)
    assert [b.height for b in bars] == [0, CHART_HEIGHT / 2, CHART_HEIGHT]
    assert all(b.y + b.height == CHART_HEIGHT for b in bars)
    assert bars[0].x < bars[1].x < bars[2].x
    assert chart_bars([]) == []
    assert [b.height for b in chart_bars([(date(2026, 11, 1), 0)])] == [0]


def test_chart_bars_are_placed_to_the_hundredth() -> None:
    days = [(date(2026, 11, 1), 3), (date(2026, 11, 2), 7)]
    bars = chart_bars(days, slots=7)  # 600 / 7 = 85.714... wide a day
    assert [(b.x, b.width, b.height) for b in bars] == [
        (8.57, 68.57, 51.43),  # 120 * 3 / 7
        (94.29, 68.57, 120.0),
    ]
    assert [(b.day, b.value) for b in bars] == days
    # A day with nothing on an otherwise empty chart is a bar of no height.
    assert [b.y for b in chart_bars([(date(2026, 11, 1), 0)], slots=3)] == [CHART_HEIGHT]


def test_a_months_chart_keeps_a_place_for_every_day_of_the_month() -> None:
    first_days = [(date(2026, 11, 1), 5), (date(2026, 11, 2), 10)]
    bars = chart_bars(first_days, slots=30)
    assert [(b.x, b.width) for b in bars] == [(2.0, 16.0), (22.0, 16.0)]  # 20 wide a day
    assert bars[1].height == CHART_HEIGHT
    # More days than places: one place per day still.
    many = [(date(2026, 11, d), d) for d in range(1, 11)]
    assert chart_bars(many, slots=5)[-1].x + chart_bars(many, slots=5)[-1].width < CHART_WIDTH
    assert chart_bars(many, slots=5) == chart_bars(many)


def test_a_months_axis_is_labelled_every_week_from_the_first() -> None:
    november = BillingPeriod.starting(date(2026, 11, 1))
    ticks = axis_ticks(november)
    assert [tick.label for tick in ticks] == ["1 Nov", "8 Nov", "15 Nov", "22 Nov", "29 Nov"]
    assert ticks[0] == AxisTick(percent=round(0.5 * 100 / 30, 2), label="1 Nov")
    assert ticks[-1].percent == round(28.5 * 100 / 30, 2)  # under the 29th's bar
    february = axis_ticks(BillingPeriod.starting(date(2026, 2, 1)))
    assert [tick.label for tick in february] == ["1 Feb", "8 Feb", "15 Feb", "22 Feb"]


NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
HARD_10 = Policy(Enforcement.HARD, grace_percent=10)


@pytest.mark.parametrize(
    ("used", "policy", "status", "expected"),
    [
        (99, HARD_10, Standing(), None),  # within the limit
        (100, SOFT, Standing(), None),  # beyond a soft limit: overage, not a block
        (100, HARD_10, Standing(), LimitState.GRACE),  # the next unit is in grace
        (109, HARD_10, Standing(), LimitState.GRACE),
        (110, HARD_10, Standing(), LimitState.BLOCKED),  # grace used up
        (100, Policy(Enforcement.HARD), Standing(), LimitState.BLOCKED),
        (0, SOFT, Standing(Reason.CANCELED), LimitState.BLOCKED),  # the status blocks
    ],
)
def test_a_metric_shows_blocked_or_in_grace_by_its_decision_on_one_more_unit(
    used: int, policy: Policy, status: Standing, expected: LimitState | None
) -> None:
    decision = decide(
        "runs", used=used, limit=100, requested=1, now=NOW, policy=policy, status=status
    )
    assert limit_state(decision) is expected


def test_limit_states_have_words_and_no_decision_has_no_state() -> None:
    assert limit_state(None) is None
    assert [state.word for state in LimitState] == ["Blocked", "In grace"]


def test_each_policy_says_what_happens_beyond_the_limit() -> None:
    assert policy_text(SOFT) == "Soft limit: use beyond it is allowed, and billed as overage"
    assert policy_text(Policy(Enforcement.HARD)) == "Hard limit: use beyond it is refused"
    assert policy_text(HARD_10) == "Hard limit (10 % grace): use beyond it is refused"


def alert_state(
    threshold: str, used: int, limit: int | None, *, metric: str = "seats", **changes: object
) -> AlertState:
    state = AlertState(
        "acme",
        date(2026, 11, 1),
        metric,
        threshold,
        "crossed",
        1,
        used,
        limit,
        datetime(2026, 11, 28, 9, tzinfo=UTC),
        None,
        None,
    )
    return replace(state, **changes)  # type: ignore[arg-type]


NOVEMBER = BillingPeriod.starting(date(2026, 11, 1))
NAMES = {"seats": "Seats", "tokens": "LLM tokens"}


def test_notices_say_what_was_reached_highest_first_and_colour_by_the_threshold() -> None:
    shown = notices(
        [
            alert_state("80%", 3, 3),  # 80 % of 3 is 3 seats: still a warning, not the limit
            alert_state("100%", 3, 3),
            alert_state("5000", 5100, None, metric="tokens"),
            alert_state("2000", 2100, 1000, metric="tokens"),
        ],
        NAMES,
        NOVEMBER,
    )
    assert [(n.metric, n.threshold, n.level, n.text) for n in shown] == [
        ("seats", "100%", Level.OVER, "Seats reached 100 % of the limit on 28 Nov: 3 of 3 used."),
        ("seats", "80%", Level.NEAR, "Seats reached 80 % of the limit on 28 Nov: 3 of 3 used."),
        ("tokens", "2000", Level.OVER, "LLM tokens reached 2,000 on 28 Nov: 2,100 used."),
        ("tokens", "5000", Level.NEAR, "LLM tokens reached 5,000 on 28 Nov: 5,100 used."),
    ]
    assert {n.period for n in shown} == {"2026-11"}


def test_dismissed_resolved_and_blocks_are_not_notices() -> None:
    hidden = [
        alert_state("80%", 3, 3, dismissed_at=datetime(2026, 11, 28, tzinfo=UTC)),
        alert_state("100%", 3, 5, status="resolved"),
        alert_state("blocked", 5, 5),
    ]
    assert notices(hidden, NAMES, NOVEMBER) == []


def test_the_history_says_each_event_in_a_line() -> None:
    def line(event_type: EventType, key: str, used: int, limit: int | None) -> str:
        facts = AlertFacts("acme", "tokens", date(2026, 11, 1), key, used, limit, 1)
        return event_text(alert_event(event_type, facts, datetime(2026, 11, 28, tzinfo=UTC)), NAMES)

    assert line(EventType.THRESHOLD_CROSSED, "80%", 812_000, 1_000_000) == (
        "LLM tokens reached 80 %: 812,000 of 1,000,000 used."
    )
    assert line(EventType.THRESHOLD_CROSSED, "5000", 5000, None) == (
        "LLM tokens reached 5,000: 5,000 used."
    )
    assert line(EventType.THRESHOLD_RESOLVED, "100%", 900, 2000) == (
        "LLM tokens back under 100 % after a change of limit: 900 of 2,000 used."
    )
    assert line(EventType.QUOTA_BLOCKED, "blocked", 600, 500) == (
        "LLM tokens blocked at the hard limit: 600 of 500 used."
    )


def test_version_tags_go_unless_they_tell_two_versions_apart() -> None:
    one_each = ["Starter (v1), 2026-12", "Unused time on Starter (v1) from x", "Growth (v3), y"]
    assert without_version_tags(one_each) == [
        "Starter, 2026-12",
        "Unused time on Starter from x",
        "Growth, y",
    ]
    two = ["Starter (v1), 2026-12", "Remaining time on Starter (v2) from y"]
    assert without_version_tags(two) == two
    assert without_version_tags(["LLM tokens: 5 over"]) == ["LLM tokens: 5 over"]
    assert without_version_tags([]) == []


STORED_LINE = StoredLine(
    1, "base_fee", "", Decimal(0), "", "starter", 1, date(2026, 12, 1), None, 0, Decimal(0), 1, None
)


def test_invoice_rows_read_as_people_read_them() -> None:
    line = replace(
        STORED_LINE,
        description="Starter (v1), 2026-12",
        formula="49.00 x 1 s / 3 s = 16.333333333333333 → 16.33",
        amount=Decimal("16.33"),
    )
    plain = replace(STORED_LINE, description="LLM tokens", formula="4 → 4.00", amount=Decimal(4))
    assert invoice_rows([line, plain]) == [
        InvoiceRow(
            "Starter, 2026-12", "49.00 x 1 s / 3 s ≈ 16.3333 → 16.33", line.formula, line.amount
        ),
        InvoiceRow("LLM tokens", "4 → 4.00", None, Decimal(4)),
    ]


def test_metrics_neither_included_nor_used_are_folded() -> None:
    def usage(key: str, limit: int | None, used: int, peak: int | None = None) -> MetricUsage:
        metric = Metric(key, key.title(), "units")
        return MetricUsage(metric, used, limit, 0, None, False, 0, Decimal(0), peak)

    lines = [
        usage("tokens", 1_000, 0),  # included, unused: shown
        usage("pages", 0, 0),  # not included, unused: folded
        usage("docs", 0, 3),  # not included but used: shown
        usage("calls", None, 0),  # unlimited: shown
        usage("seats", 0, 0, peak=2),  # a peak this month: shown
    ]
    shown, folded = shown_and_folded(lines)
    assert [line.metric.key for line in shown] == ["tokens", "docs", "calls", "seats"]
    assert [line.metric.key for line in folded] == ["pages"]


class Tried:
    def __init__(
        self, status: PaymentStatus, failure: str | None = None, *, paid_now: bool = False
    ) -> None:
        self.status = status
        self.failure_message = failure
        self.updated_at = datetime(2026, 12, 3, 9, tzinfo=UTC)
        self.checkout_expires_at = self.updated_at + timedelta(hours=1) if paid_now else None


def test_an_invoices_payment_reads_as_words() -> None:
    failed = Tried(PaymentStatus.FAILED, "Your card was declined.")
    assert payment_state("paid", [failed, Tried(PaymentStatus.SUCCEEDED)], True, True) == "Paid"
    assert payment_state("void", [], True, True) == "Void"
    assert payment_state("open", [failed], True, False) == "Open"  # collected by hand
    assert payment_state("open", [failed], True, True) == (
        "Failed: Your card was declined (3 Dec 2026)"
    )
    assert payment_state("open", [Tried(PaymentStatus.FAILED)], True, True) == (
        "Failed: declined (3 Dec 2026)"
    )
    assert payment_state("open", [failed, Tried(PaymentStatus.PENDING)], True, True) == (
        "Processing"
    )
    assert payment_state("open", [Tried(PaymentStatus.PROCESSING)], False, True) == "Processing"
    assert payment_state("open", [], True, True) == "Being collected"
    assert payment_state("open", [], False, True) == "Waiting for a card"
    # Paid now: the page open reads so; left unpaid, the invoice reads as before it.
    page = Tried(PaymentStatus.PENDING, paid_now=True)
    assert payment_state("open", [failed, page], True, True) == "Being paid on Stripe's page"
    left = Tried(PaymentStatus.CANCELED, paid_now=True)
    assert payment_state("open", [left], False, True) == "Waiting for a card"
    assert payment_state("open", [left], True, True) == "Being collected"
    assert payment_state("open", [failed, left], True, True) == (
        "Failed: Your card was declined (3 Dec 2026)"
    )


def test_a_card_reads_without_its_number() -> None:
    assert card_text("visa", "4242", 3, 2031) == "Visa ending 4242, expires 03/2031"
    assert card_text("amex", "0005", 12, 2030) == "Amex ending 0005, expires 12/2030"


def test_an_event_that_is_not_an_alert_reads_as_its_type_and_facts() -> None:
    paid = Event(
        "evt_1",
        EventType.PAYMENT_SUCCEEDED,
        "acme",
        datetime(2026, 12, 3, tzinfo=UTC),
        {"invoice_number": "INV-000001", "amount": "49.75"},
    )
    assert event_text(paid, NAMES) == ("payment.succeeded: invoice_number INV-000001, amount 49.75")


def test_a_coupon_reads_as_what_it_takes_and_until_when() -> None:
    now = datetime(2026, 12, 3, tzinfo=UTC)
    three = Coupon("L20", "Launch", Kind.PERCENT, Decimal(20), Duration.REPEATING, periods=3)
    applied = datetime(2026, 11, 5, tzinfo=UTC)
    assert discount_text(Redemption("o", three, applied), now) == (
        "Launch (L20): 20% off, through January 2027"
    )
    once = replace(three, duration=Duration.ONCE, periods=None, applies_to=(FEE, "tokens"))
    assert discount_text(Redemption("o", once, applied), now) == (
        "Launch (L20): 20% off, on the plan fee, tokens, ended with November 2026"
    )
    this_month = Redemption("o", once, now)
    assert discount_text(this_month, now).endswith(", through December 2026")
    removed = Redemption("o", three, applied, removed_at=now)
    assert discount_text(removed, now) == "Launch (L20): 20% off, removed 3 December 2026"
    five = Coupon("F5", "Five", Kind.AMOUNT, Decimal(5), Duration.FOREVER, currency="EUR")
    assert discount_text(Redemption("o", five, applied), now) == (
        "Five (F5): 5.00 EUR off, every month"
    )


def test_a_price_per_value_is_shown_a_value_a_line_and_the_usage_split_likewise() -> None:
    terms = GROWTH.metrics["tokens"]
    assert overage_lines(terms, "USD") == [
        "then by model:",
        "gpt-5: $0.03 per 1,000",
        "gpt-5-mini: $0.005 per 1,000",
        "other model values: $0.015 per 1,000",
    ]
    tokens = Metric("tokens", "LLM tokens", "tokens")
    line = metric_usage(
        tokens, 5_300_000, GROWTH, {}, by_value={"gpt-5": 1_000_000, "gpt-5-mini": 4_100_000}
    )
    # The 5,000,000 included cover gpt-5's 1,000,000, then 4,000,000 of gpt-5-mini's.
    assert split_lines(line, GROWTH) == [
        "gpt-5: 1,000,000 tokens, all included",
        "gpt-5-mini: 4,100,000 tokens, 100,000 over: about $0.50",
        "other model values: 200,000 tokens, 200,000 over: about $3.00",
    ]
    assert line.overage_amount == Decimal("3.50")
    assert split_lines(metric_usage(tokens, 10, STARTER, {}), STARTER) == []
    unused = metric_usage(tokens, 10, GROWTH, {}, by_value={"gpt-5": 10})
    assert split_lines(unused, GROWTH) == ["gpt-5: 10 tokens, all included"]
