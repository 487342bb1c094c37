"""The billing summary's lines, trial state and the small rules they rest on: pure, no
database. Each figure is worked out by hand in the test."""

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from billing_kernel.common.periods import BillingPeriod, days_until
from billing_kernel.errors import InvalidInput
from billing_kernel.metrics.rules import (
    DEFAULT_METRICS,
    Aggregation,
    Metric,
    months_to_carry_seats,
    seats_in_month,
    used_and_peak,
)
from billing_kernel.orgs.rules import BillingStatus, new_trial_state
from billing_kernel.plans.rules import SOFT, Enforcement, PlanMetric, Policy
from billing_kernel.quota.rules import LimitOverride, decide
from billing_kernel.summary.rules import (
    Granularity,
    OrgBillingSummary,
    UsagePoint,
    build_dashboard,
    build_summary,
    daily_usage,
    days_so_far,
    first_month,
    grouped,
    metric_usage,
    monthly_usage,
    point_starts,
    validate_group_by,
)
from tests.seeded import GROWTH, STARTER

NOW = datetime(2026, 5, 15, 12, 0, tzinfo=UTC)
TOKENS_DECISION = decide("tokens", used=30, limit=1_000, requested=1, now=NOW)
TOKENS, RUNS, SEATS = DEFAULT_METRICS
PLAN = STARTER


def test_a_metric_a_plan_does_not_name_gives_none_and_charges_nothing() -> None:
    assert PLAN.allowance("gpu_seconds") == PlanMetric(
        "gpu_seconds", 0, Decimal("0"), 1, Policy(Enforcement.HARD)
    )
    line = metric_usage(Metric("gpu_seconds", "GPU", "seconds"), 40, PLAN, {})
    assert (line.limit, line.overage_quantity, line.overage_amount) == (0, 40, Decimal("0.00"))
    assert PLAN.allowance("tokens") is PLAN.metrics["tokens"]


def test_a_line_under_its_limit_has_no_overage() -> None:
    line = metric_usage(TOKENS, 250_000, PLAN, {})
    assert (line.used, line.limit, line.remaining) == (250_000, 1_000_000, 750_000)
    assert line.percent_used == Decimal("25.0")
    assert not line.soft_limit_exceeded
    assert (line.overage_quantity, line.overage_amount) == (0, Decimal("0.00"))
    assert line.peak is None


def test_a_line_over_its_limit_charges_the_overage_per_block() -> None:
    line = metric_usage(TOKENS, 1_234_567, PLAN, {})
    assert line.overage_quantity == 234_567
    assert line.overage_amount == Decimal("4.69")  # 234.567 blocks x 0.02, half up
    assert line.remaining == 0
    assert line.soft_limit_exceeded
    assert line.percent_used == Decimal("123.4")  # floored


def test_exactly_at_the_limit_is_not_over() -> None:
    line = metric_usage(RUNS, 200, PLAN, {})
    assert (line.soft_limit_exceeded, line.overage_quantity, line.remaining) == (False, 0, 0)
    assert line.percent_used == Decimal("100.0")


def test_an_override_replaces_the_plans_limit_and_none_lifts_it() -> None:
    raised = metric_usage(RUNS, 250, PLAN, {"playbook_runs": limit_of(300)})
    assert (raised.limit, raised.overage_quantity, raised.remaining) == (300, 0, 50)
    assert raised.policy == SOFT
    hard = LimitOverride(mode=Enforcement.HARD, grace_percent=5)
    hardened = metric_usage(RUNS, 250, PLAN, {"playbook_runs": hard})
    assert (hardened.limit, hardened.policy) == (200, Policy(Enforcement.HARD, grace_percent=5))
    lifted = metric_usage(RUNS, 10**9, PLAN, {"playbook_runs": limit_of(None)})
    assert (lifted.limit, lifted.remaining, lifted.percent_used) == (None, None, None)
    assert (lifted.overage_quantity, lifted.soft_limit_exceeded) == (0, False)


def test_seats_are_charged_on_the_peak_not_on_todays_count() -> None:
    line = metric_usage(SEATS, 2, PLAN, {}, peak=5)
    assert (line.used, line.peak, line.limit) == (2, 5, 3)
    assert line.overage_quantity == 2  # peak 5 over 3 included
    assert line.overage_amount == Decimal("30.00")
    assert not line.soft_limit_exceeded  # today's 2 seats are within the 3


def test_used_and_peak_of_seats_and_of_other_metrics() -> None:
    assert used_and_peak(SEATS, counter=5, members=2) == (2, 5)
    assert used_and_peak(SEATS, counter=1, members=4) == (4, 4)  # the peak is never below today
    assert used_and_peak(TOKENS, counter=700, members=4) == (700, None)
    # A closed period has no live count: its seats are the recorded peak.
    assert used_and_peak(SEATS, counter=6, members=None) == (6, 6)
    assert used_and_peak(TOKENS, counter=700, members=None) == (700, None)
    custom = Metric("gpu_seconds", "GPU seconds", "s", Aggregation.SUM)
    assert used_and_peak(custom, counter=0, members=9) == (0, None)


def test_a_member_change_carries_the_count_into_the_quiet_months_before_it() -> None:
    june = BillingPeriod.starting(date(2026, 6, 1))
    assert [m.key.month for m in months_to_carry_seats(date(2026, 2, 1), june)] == [3, 4, 5]
    assert months_to_carry_seats(date(2026, 5, 1), june) == []  # last month was recorded
    assert months_to_carry_seats(date(2026, 6, 1), june) == []  # this month was
    assert months_to_carry_seats(None, june) == []  # never a member before
    january = BillingPeriod.starting(date(2027, 1, 1))
    assert [m.label for m in months_to_carry_seats(date(2026, 11, 1), january)] == ["2026-12"]


def test_a_months_seats_are_its_peak_or_what_was_carried_there() -> None:
    june, may, april, march = date(2026, 6, 1), date(2026, 5, 1), date(2026, 4, 1), date(2026, 3, 1)

    def seats(recorded: int | None, month: date, last: date | None, now: int) -> int:
        return seats_in_month(recorded, month, current=june, last_recorded=last, members_now=now)

    assert seats(4, april, may, 1) == 4  # recorded: the peak, whatever today's count
    assert seats(None, may, april, 3) == 3  # after the last change: nothing changed since
    assert seats(None, march, april, 3) == 0  # before the first change: no one yet
    assert seats(None, april, april, 3) == 0  # not after the last change
    assert seats(None, may, None, 0) == 0  # never a member
    assert seats(None, june, may, 2) == 2  # this month: at least today's count
    assert seats(None, june, may, 0) == 0
    assert seats(5, june, june, 2) == 5
    assert seats(1, june, june, 2) == 2
    assert seats(None, date(2026, 7, 1), may, 2) == 0  # not begun yet


def limit_of(n: int | None) -> LimitOverride:
    return LimitOverride(included_quantity=n, sets_included=True)


def test_the_summary_has_a_line_per_metric_and_adds_the_rounded_overage() -> None:
    state = new_trial_state("acme", "starter", NOW - timedelta(days=10), trial_days=30)
    summary = build_summary(
        plan=PLAN,
        state=state,
        period=BillingPeriod.containing(NOW),
        catalogue=DEFAULT_METRICS,
        counters={"tokens": 1_234_567, "playbook_runs": 201, "seats": 5},
        seat_count=2,
        overrides={"playbook_runs": limit_of(200)},
        now=NOW,
    )
    assert [line.metric.key for line in summary.usage] == ["tokens", "playbook_runs", "seats"]
    assert summary.metric("tokens").overage_amount == Decimal("4.69")
    assert summary.metric("playbook_runs").overage_amount == Decimal("0.25")
    assert (summary.metric("seats").used, summary.metric("seats").peak) == (2, 5)
    assert summary.estimated_overage == Decimal("34.94")  # 4.69 + 0.25 + 30.00
    assert summary.any_soft_limit_exceeded
    assert summary.trial_days_left == 20
    assert (summary.org_id, summary.plan, summary.generated_at) == ("acme", PLAN, NOW)


def unused_summary(created: datetime = NOW) -> OrgBillingSummary:
    """This month's summary of an org on Starter, created at `created`, that used nothing."""
    return build_summary(
        plan=PLAN,
        state=new_trial_state("acme", "starter", created, trial_days=30),
        period=BillingPeriod.containing(NOW),
        catalogue=DEFAULT_METRICS,
        counters={},
        seat_count=0,
        overrides={},
        now=NOW,
    )


def test_a_summary_within_every_limit_owes_nothing() -> None:
    summary = unused_summary()
    assert [line.used for line in summary.usage] == [0, 0, 0]
    assert summary.metric("seats").peak == 0
    assert summary.estimated_overage == Decimal("0.00")
    assert not summary.any_soft_limit_exceeded


def test_a_new_org_is_in_trial_for_the_given_days_from_now_in_utc() -> None:
    state = new_trial_state("acme", "starter", NOW.astimezone(timezone(timedelta(hours=-5))), 14)
    assert (state.org_id, state.plan_slug, state.status) == ("acme", "starter", BillingStatus.TRIAL)
    assert state.trial_ends_at == NOW + timedelta(days=14)
    assert state.trial_ends_at.tzinfo is UTC
    assert state.created_at == state.updated_at == state.status_since == NOW
    assert state.created_at.tzinfo is UTC  # given in New York time, stored in UTC


@pytest.mark.parametrize(
    ("elapsed", "left"),
    [
        (timedelta(0), 14),
        (timedelta(days=13, hours=23), 1),  # part of a day left counts as a day
        (timedelta(days=14) - timedelta(microseconds=1), 1),
        (timedelta(days=14), 0),
        (timedelta(days=20), 0),
    ],
)
def test_trial_days_left_count_part_days_and_stop_at_zero(elapsed: timedelta, left: int) -> None:
    state = new_trial_state("acme", "starter", NOW, trial_days=14)
    assert state.trial_days_left(NOW + elapsed) == left


def test_only_an_org_in_trial_has_trial_days_left() -> None:
    state = new_trial_state("acme", "starter", NOW, trial_days=14)
    assert replace(state, status=BillingStatus.ACTIVE).trial_days_left(NOW) is None
    assert replace(state, trial_ends_at=None).trial_days_left(NOW) is None


def test_days_until_counts_part_days() -> None:
    end = datetime(2026, 6, 1, tzinfo=UTC)
    assert days_until(end, end - timedelta(seconds=1)) == 1
    assert days_until(end, end - timedelta(days=1)) == 1
    assert days_until(end, end - timedelta(days=1, seconds=1)) == 2
    assert days_until(end, end) == 0
    assert days_until(end, end + timedelta(days=3)) == 0


def test_days_so_far_runs_from_the_first_to_today_or_the_periods_last_day() -> None:
    may = BillingPeriod.containing(NOW)
    assert days_so_far(may, NOW) == [date(2026, 5, d) for d in range(1, 16)]
    assert days_so_far(may, datetime(2026, 5, 1, tzinfo=UTC)) == [date(2026, 5, 1)]
    april = may.previous()
    assert days_so_far(april, NOW) == [date(2026, 4, d) for d in range(1, 31)]


def test_the_dashboard_has_each_day_so_far_and_each_past_month_with_zeros_filled() -> None:
    summary = build_summary(
        plan=PLAN,
        state=new_trial_state("acme", "starter", NOW, trial_days=30),
        period=BillingPeriod.containing(NOW),
        catalogue=DEFAULT_METRICS,
        counters={"tokens": 30},
        seat_count=2,
        overrides={},
        now=NOW,
    )
    march = BillingPeriod.starting(date(2026, 3, 1))
    dashboard = build_dashboard(
        summary,
        oldest=march,
        per_day={(date(2026, 5, 2), "tokens"): 10, (date(2026, 5, 15), "tokens"): 20},
        past={(date(2026, 3, 1), "tokens"): 7, (date(2026, 4, 1), "seats"): 4},
        plans=[replace(PLAN, version=2, monthly_price=Decimal("59.00")), GROWTH],
        decisions={"tokens": TOKENS_DECISION},
    )
    assert dashboard.decisions == {"tokens": TOKENS_DECISION}
    assert set(dashboard.daily) == {"tokens", "playbook_runs"}  # seats follow members, no days
    tokens = dict(dashboard.daily["tokens"])
    assert list(tokens) == [date(2026, 5, day) for day in range(1, 16)]  # up to today
    assert (tokens[date(2026, 5, 2)], tokens[date(2026, 5, 15)], tokens[date(2026, 5, 1)]) == (
        10,
        20,
        0,
    )
    assert dashboard.history == (
        (march, {"tokens": 7, "playbook_runs": 0, "seats": 0}),
        (march.next(), {"tokens": 0, "playbook_runs": 0, "seats": 4}),
    )
    assert dashboard.plans == (PLAN, GROWTH)  # the org's own plan at the org's version
    assert dashboard.summary is summary


def test_usage_points_run_from_the_first_month_to_the_last_or_now_after_a_cursor() -> None:
    march, june = BillingPeriod.parse("2026-03"), BillingPeriod.parse("2026-06")
    now = datetime(2026, 5, 3, 12, tzinfo=UTC)
    months = Granularity.MONTH

    def starts(granularity: Granularity, after: str | None = None) -> list[str]:
        return [d.isoformat() for d in point_starts(march, june, granularity, now, after)]

    assert starts(months) == ["2026-03-01", "2026-04-01", "2026-05-01"]  # not June: not yet
    assert starts(months, "2026-03-01") == ["2026-04-01", "2026-05-01"]
    assert starts(months, "2026-03-15") == ["2026-04-01", "2026-05-01"]
    assert starts(months, "2026-05-01") == []
    assert starts(months, "0") == starts(months)  # a position before them all
    assert starts(months, "~") == []  # after them all
    days = starts(Granularity.DAY)
    assert (days[0], days[-1], len(days)) == ("2026-03-01", "2026-05-03", 31 + 30 + 3)
    assert starts(Granularity.DAY, "2026-04-30") == ["2026-05-01", "2026-05-02", "2026-05-03"]
    assert list(point_starts(june, march, months, now, None)) == []
    december = BillingPeriod.parse("2025-12")
    assert [d.isoformat() for d in point_starts(december, march, months, now, None)] == [
        "2025-12-01",
        "2026-01-01",
        "2026-02-01",
        "2026-03-01",
    ]


def test_monthly_and_daily_usage_fill_missing_figures_with_zero() -> None:
    counters = {(date(2026, 4, 1), "tokens"): 7, (date(2026, 4, 1), "seats"): 3}
    [april] = monthly_usage([date(2026, 4, 1)], DEFAULT_METRICS, counters)
    assert (april.start, april.end) == (date(2026, 4, 1), date(2026, 5, 1))
    assert april.usage == {"tokens": 7, "playbook_runs": 0, "seats": 3}
    per_day = {(date(2026, 4, 2), "playbook_runs"): 2}
    first, second = daily_usage([date(2026, 4, 1), date(2026, 4, 2)], DEFAULT_METRICS, per_day)
    assert (second.start, second.end) == (date(2026, 4, 2), date(2026, 4, 3))
    assert first.usage == {"tokens": 0, "playbook_runs": 0}  # seats have no daily figure
    assert second.usage == {"tokens": 0, "playbook_runs": 2}
    users = Metric("users", "Users", "users", Aggregation.UNIQUE_COUNT, value_property="user")
    [day] = daily_usage(
        [date(2026, 4, 2)], [*DEFAULT_METRICS, users], {(date(2026, 4, 2), "users"): 4}
    )
    assert day.usage == {"tokens": 0, "playbook_runs": 0, "users": 4}  # new values that day


def test_the_history_starts_at_the_orgs_first_month_not_before_it_existed() -> None:
    january = BillingPeriod.starting(date(2026, 1, 1))
    april_created = datetime(2026, 4, 30, 23, 59, tzinfo=UTC)
    assert first_month(january, april_created, {}) == BillingPeriod.starting(date(2026, 4, 1))
    # Usage dated before the org was created (auto-created by a late event) opens the history.
    backdated = {(date(2026, 2, 1), "tokens"): 5, (date(2026, 3, 1), "tokens"): 9}
    assert first_month(january, april_created, backdated) == BillingPeriod.starting(
        date(2026, 2, 1)
    )
    # A counter left at zero is no usage.
    assert first_month(january, april_created, {(date(2026, 2, 1), "seats"): 0}) == (
        BillingPeriod.starting(date(2026, 4, 1))
    )
    # An org older than the window: the window's first month.
    assert first_month(january, datetime(2024, 7, 1, tzinfo=UTC), {}) == january
    assert first_month(january, datetime(2026, 1, 1, tzinfo=UTC), {}) == january


def test_a_dashboard_of_an_org_created_this_month_has_no_previous_months() -> None:
    def dashboard_of(created: datetime) -> tuple[BillingPeriod, ...]:
        oldest = BillingPeriod.starting(date(2025, 11, 1))
        board = build_dashboard(
            unused_summary(created), oldest=oldest, per_day={}, past={}, plans=[], decisions={}
        )
        return tuple(month for month, _ in board.history)

    assert dashboard_of(NOW - timedelta(days=1)) == ()
    march = BillingPeriod.starting(date(2026, 3, 1))
    assert dashboard_of(datetime(2026, 3, 31, tzinfo=UTC)) == (march, march.next())


def test_group_by_names_are_simple_property_names() -> None:
    for name in ("model", "a", "llm.model", "x:y-z_1", "m" * 64):
        assert validate_group_by(name) == name
    for bad in ("", "m" * 65, "a b", 'a"b', "a\\b", "a$", "é"):
        with pytest.raises(InvalidInput) as refused:
            validate_group_by(bad)
        assert refused.value.details["field"] == "group_by"
        assert refused.value.message.startswith("group_by must be a property name of 1-64")


def test_points_get_their_groups_largest_first() -> None:
    day = date(2026, 11, 1)
    points = [
        UsagePoint(day, date(2026, 11, 2), {"tokens": 19, "runs": 0}),
        UsagePoint(date(2026, 11, 2), date(2026, 11, 3), {"tokens": 0, "runs": 0}),
    ]
    totals = {(day, "tokens"): {"b": 5, None: 5, "a": 5, "c": 4}}
    [first, second] = grouped(points, totals)
    assert (first.start, first.usage) == (points[0].start, points[0].usage)
    assert first.groups == {"tokens": {"a": 5, "b": 5, None: 5, "c": 4}, "runs": {}}
    assert list(first.groups["tokens"]) == ["a", "b", None, "c"]
    assert second.groups == {"tokens": {}, "runs": {}}
    [ties] = grouped(points[:1], {(day, "tokens"): {"B": 1, "": 1, None: 1, "A": 1}})
    assert ties.groups is not None
    assert list(ties.groups["tokens"]) == ["", "A", "B", None]


def test_a_metric_priced_per_value_is_summed_from_its_values_as_its_lines_bill_it() -> None:
    state = new_trial_state("acme", "growth", NOW - timedelta(days=3), trial_days=0)
    summary = build_summary(
        plan=GROWTH,
        state=state,
        period=BillingPeriod.containing(NOW),
        catalogue=DEFAULT_METRICS,
        counters={"tokens": 5_300_000, "playbook_runs": 1_001},
        seat_count=2,
        overrides={},
        now=NOW,
        by_value={"tokens": {"gpt-5": 1_000_000, "gpt-5-mini": 4_100_000}},
    )
    tokens = summary.metric("tokens")
    # gpt-5 all included, gpt-5-mini 100,000 over at 0.005, the other 200,000 at 0.015
    assert [(s.value, s.over, s.cost().amount) for s in tokens.shares] == [
        ("gpt-5", 0, Decimal("0.00")),
        ("gpt-5-mini", 100_000, Decimal("0.50")),
        (None, 200_000, Decimal("3.00")),
    ]
    assert (tokens.overage_quantity, tokens.overage_amount) == (300_000, Decimal("3.50"))
    runs = summary.metric("playbook_runs")  # priced as one: no shares
    assert (runs.shares, runs.overage_amount) == ((), Decimal("0.20"))
