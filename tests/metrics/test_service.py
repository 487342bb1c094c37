"""Meters over real databases: random streams of named events, with repeats and times out of
order, counted exactly as a plain-Python reference counts them; concurrent senders of the
same events count each once. Each backend gets a database of its own: the meters defined
here would otherwise show in every other test's catalogue."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, text

from billing_kernel.common.periods import BillingPeriod
from billing_kernel.db.database import Database
from billing_kernel.db.tables import usage_lines, usage_skips
from billing_kernel.db.unit_of_work import UnitOfWork
from billing_kernel.errors import InvalidInput
from billing_kernel.kernel import Kernel
from billing_kernel.metrics.rules import Metric, Position, new_meter
from billing_kernel.orgs.rules import BillingStatus
from billing_kernel.plans.repository import PlanRepository
from billing_kernel.plans.rules import Plan, PlanMetric
from billing_kernel.usage.rules import RecordStatus, UsageReport
from tests.conftest import (
    Clock,
    make_kernel,
    migrate_with_demo_catalogue,
    new_id,
    scratch_postgres_database,
)

NOW = datetime(2026, 5, 15, 12, 0, tzinfo=UTC)
METERS = (
    new_meter(
        "llm_tokens",
        name="LLM tokens",
        unit="tokens",
        aggregation="sum",
        events=["llm.completion", "llm.chat"],
        value_property="tokens",
    ),
    new_meter(
        "llm_calls", name="LLM calls", unit="calls", aggregation="count", events=["llm.completion"]
    ),
    new_meter(
        "gpt_tokens",
        name="GPT tokens",
        unit="tokens",
        aggregation="sum",
        events=["llm.completion"],
        value_property="tokens",
        filters={"model": "gpt-5", "cached": False},
        required=True,  # billed: an event it admits without its amount is refused
    ),
    new_meter(
        "llm_users",
        name="LLM users",
        unit="users",
        aggregation="unique_count",
        events=["llm.completion", "llm.chat"],
        value_property="user",
    ),
    new_meter(
        "peak_tokens",
        name="Peak tokens per call",
        unit="tokens",
        aggregation="max",
        events=["llm.completion", "workflow.run"],
        value_property="tokens",
    ),
    new_meter(
        "last_tokens",
        name="Tokens of the last chat",
        unit="tokens",
        aggregation="latest",
        events=["llm.chat", "workflow.retry"],
        value_property="tokens",
    ),
    new_meter(
        "workflow_runs",
        name="Workflow runs",
        unit="runs",
        aggregation="count",
        events=["workflow.run", "workflow.retry"],
    ),
)
NAMES = ("llm.completion", "llm.chat", "workflow.run", "workflow.retry")


@pytest.fixture(scope="module")
def meter_url(module_database_url: str) -> str:
    """A database of this module's own, with METERS defined."""

    async def define() -> None:
        database = Database(module_database_url)
        try:
            kernel = make_kernel(database, Clock(NOW))
            for meter in METERS:
                await kernel.metrics.define(meter)
        finally:
            await database.dispose()

    asyncio.run(define())
    return module_database_url


@dataclass(frozen=True)
class Sent:
    key: str
    name: str
    properties: dict[str, Any]
    days_ago: int


def counts(meter: Metric, sent: Sent) -> bool:
    """Whether `meter` counts `sent`, worked out plainly: its name, and every filter."""
    return sent.name in meter.listens_to and all(
        type(sent.properties.get(prop)) is type(wanted) and sent.properties.get(prop) == wanted
        for prop, wanted in meter.filters
    )


def readable(meter: Metric, sent: Sent) -> bool:
    """Whether `meter` can read `sent`: a sum, a max or a latest its whole number, a unique
    count its value, a count anything."""
    read = sent.properties.get(meter.value_property or "value", object())
    if meter.aggregation in ("sum", "max", "latest"):
        return isinstance(read, int)
    return meter.aggregation != "unique_count" or meter.value_property in sent.properties


def valid(sent: Sent) -> bool:
    """Whether it is accepted: no required metric that counts it fails to read it."""
    return not any(m.required and counts(m, sent) and not readable(m, sent) for m in METERS)


def skipped(sent: Sent) -> tuple[str, ...]:
    """The metrics that count its name and admit it but cannot read it, by key."""
    return tuple(sorted(m.key for m in METERS if counts(m, sent) and not readable(m, sent)))


def reference(stream: list[Sent]) -> dict[tuple[date, str], int]:
    """Per month and metric: each key's first event, if valid, counted once: the sum of its
    amounts, how many, the highest, the last (by time, then key), or how many distinct values
    (totals of 0 left out, as `counted` leaves them)."""
    totals: dict[tuple[date, str], int] = {}
    last: dict[tuple[date, str], tuple[datetime, str]] = {}
    values: dict[tuple[date, str], set[str]] = {}
    seen: set[str] = set()
    for sent in stream:
        if sent.key in seen:
            continue
        seen.add(sent.key)
        if not valid(sent):
            continue
        month = BillingPeriod.containing(moment(sent)).key
        for meter in (m for m in METERS if counts(m, sent) and readable(m, sent)):
            key = (month, meter.key)
            if meter.aggregation == "unique_count":
                value = sent.properties[meter.value_property or ""]
                values.setdefault(key, set()).add(f"{type(value).__name__}:{value}")
            elif meter.aggregation == "max":
                totals[key] = max(totals.get(key, 0), sent.properties["tokens"])
            elif meter.aggregation == "latest":
                if key not in last or (moment(sent), sent.key) > last[key]:
                    last[key] = (moment(sent), sent.key)
                    totals[key] = sent.properties["tokens"]
            else:
                added = (
                    1
                    if meter.aggregation == "count"
                    else sent.properties[meter.value_property or ""]
                )
                totals[key] = totals.get(key, 0) + added
    totals |= {key: len(distinct) for key, distinct in values.items()}
    return {key: total for key, total in totals.items() if total}


def moment(sent: Sent) -> datetime:
    return NOW - timedelta(days=sent.days_ago, minutes=sent.days_ago)


properties = st.fixed_dictionaries(
    {},
    optional={
        "tokens": st.integers(0, 10**6),
        "model": st.sampled_from(["gpt-5", "claude", "GPT-5"]),
        "cached": st.booleans() | st.just(0),
        # Any text a database stores: a NUL and a lone surrogate (not Unicode text) are
        # refused (tests/api/test_bad_input.py).
        "region": st.text(
            st.characters(exclude_characters="\x00", exclude_categories=["Cs"]), max_size=3
        ),
        "user": st.sampled_from(["u1", "u2", "u3", "1"]) | st.integers(1, 2) | st.just(True),
    },
)
events = st.lists(
    st.builds(Sent, st.just(""), st.sampled_from(NAMES), properties, st.integers(0, 34)),
    min_size=1,
    max_size=30,
)


def streams() -> st.SearchStrategy[tuple[list[Sent], list[int]]]:
    """Events under keys of their own, each key sent one or more times (the repeats
    identical), shuffled, and cut into batches."""

    @st.composite
    def build(draw: st.DrawFn) -> tuple[list[Sent], list[int]]:
        unique = [
            Sent(f"k{n}", s.name, s.properties, s.days_ago) for n, s in enumerate(draw(events))
        ]
        repeats = draw(st.lists(st.integers(1, 3), min_size=len(unique), max_size=len(unique)))
        stream = [sent for sent, times in zip(unique, repeats, strict=True) for _ in range(times)]
        shuffled = draw(st.permutations(stream))
        cuts = draw(st.lists(st.integers(1, 10), min_size=1, max_size=len(stream)))
        return list(shuffled), cuts

    return build()


async def send(kernel: Kernel, org_id: str, stream: list[Sent], cuts: list[int]) -> list[Any]:
    outcomes: list[Any] = []
    start, sizes = 0, iter(cuts * len(stream))
    while start < len(stream):
        batch = stream[start : start + next(sizes)]
        result = await kernel.usage.record_batch(
            [
                UsageReport(org_id, None, None, s.key, moment(s), s.properties or None, s.name)
                for s in batch
            ]
        )
        outcomes.extend(result.outcomes)
        start += len(batch)
    return outcomes


async def counted(kernel: Kernel, org_id: str) -> dict[tuple[date, str], int]:
    """The org's counters, and (checked equal) its lines summed (a max's: the highest; a
    latest's: the last), and its usage by day added up (a max's: the highest day; a
    latest's: the last day's), per month and metric."""
    counters: dict[tuple[date, str], int] = {}
    for period in (BillingPeriod.containing(NOW), BillingPeriod.starting(date(2026, 4, 1))):
        for metric, total in (await kernel.usage_reader.counters(org_id, period)).items():
            if total:
                counters[period.key, metric] = total
    lines: dict[tuple[date, str], int] = {}
    async for page in kernel.usage_reader.all_events(org_id):  # in time order, then key order
        for line in page:
            key = (BillingPeriod.containing(line.occurred_at).key, line.metric)
            if line.metric == "peak_tokens":
                lines[key] = max(lines.get(key, 0), line.quantity)
            elif line.metric == "last_tokens":
                lines[key] = line.quantity
            else:
                lines[key] = lines.get(key, 0) + line.quantity
    assert {k: v for k, v in lines.items() if v} == counters
    by_day: dict[tuple[date, str], int] = {}
    for period in (BillingPeriod.containing(NOW), BillingPeriod.starting(date(2026, 4, 1))):
        daily = await kernel.usage_reader.daily_totals(org_id, period, uow=None)
        for (_, metric), total in sorted(daily.items()):
            before = by_day.get((period.key, metric), 0)
            if metric == "last_tokens":
                by_day[period.key, metric] = total  # the last day's
            elif metric == "peak_tokens":
                by_day[period.key, metric] = max(before, total)
            else:
                by_day[period.key, metric] = before + total
    assert {k: v for k, v in by_day.items() if v} == counters
    return counters


def skip_reference(stream: list[Sent]) -> dict[tuple[date, str], int]:
    """Per month and metric: how many accepted events (each key's first) it skipped."""
    totals: dict[tuple[date, str], int] = {}
    seen: set[str] = set()
    for sent in stream:
        if sent.key in seen or not valid(sent):
            continue
        seen.add(sent.key)
        for metric in skipped(sent):
            key = (BillingPeriod.containing(moment(sent)).key, metric)
            totals[key] = totals.get(key, 0) + 1
    return totals


async def skips(kernel: Kernel, org_id: str) -> dict[tuple[date, str], int]:
    """The org's skip counts per month and metric, as stored."""
    async with kernel.database.transaction() as conn:
        rows = await conn.execute(
            select(usage_skips.c.period_start, usage_skips.c.metric, usage_skips.c.events).where(
                usage_skips.c.org_id == org_id
            )
        )
        return {(period_start, metric): events for period_start, metric, events in rows}


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(sent=streams())
def test_every_meter_counts_a_random_stream_as_the_reference_does(
    meter_url: str, sent: tuple[list[Sent], list[int]]
) -> None:
    stream, cuts = sent

    async def run() -> None:
        database = Database(meter_url)
        try:
            kernel = make_kernel(database, Clock(NOW))
            org_id = new_id()
            await _org(kernel, org_id)
            outcomes = await send(kernel, org_id, stream, cuts)
            first: set[str] = set()
            for s, outcome in zip(stream, outcomes, strict=True):
                if not valid(s):
                    assert outcome.status is RecordStatus.REFUSED
                    assert isinstance(outcome.error, InvalidInput)
                    assert outcome.error.details["field"] in (
                        "properties.tokens",
                        "properties.user",
                    )
                elif s.key in first:
                    assert outcome.status is RecordStatus.DUPLICATE
                else:
                    assert outcome.status is RecordStatus.ACCEPTED
                    assert outcome.event.skipped == skipped(s)
                    first.add(s.key)
            assert await counted(kernel, org_id) == reference(stream)
            assert await skips(kernel, org_id) == skip_reference(stream)
        finally:
            await database.dispose()

    asyncio.run(run())


def test_concurrent_senders_of_the_same_events_count_each_once(meter_url: str) -> None:
    rng = random.Random(7)
    stream = [
        Sent(
            f"k{n}",
            rng.choice(NAMES),
            {
                "tokens": rng.randrange(1000),
                "model": rng.choice(["gpt-5", "claude"]),
                "user": rng.choice(["u1", "u2", "u3", "u4", 1, 2]),
            }
            | ({"cached": False} if n % 2 else {}),
            rng.randrange(35),
        )
        for n in range(300)
    ]

    async def run() -> None:
        database = Database(meter_url, pool_size=8)
        try:
            kernel = make_kernel(database, Clock(NOW))
            org_id = new_id()
            await _org(kernel, org_id)  # created once, before the race
            senders = []
            for seed in range(6):  # each sends every event, in an order of its own
                order = stream[:]
                random.Random(seed).shuffle(order)
                senders.append(send(kernel, org_id, order, [50]))
            results = await asyncio.gather(*senders)
            accepted = sum(o.status is RecordStatus.ACCEPTED for r in results for o in r)
            assert accepted == len(stream)
            # Every other send repeats it, whether its insert saw the stored event (committed
            # before it began) or waited for a concurrent sender's and compared after.
            assert all(
                o.status in (RecordStatus.ACCEPTED, RecordStatus.DUPLICATE)
                for r in results
                for o in r
            )
            assert await counted(kernel, org_id) == reference(stream)
        finally:
            await database.dispose()

    asyncio.run(run())


def test_a_line_counts_in_its_event_s_utc_month_whatever_the_session_time_zone(
    meter_url: str,
) -> None:
    """Each line's month is its event's UTC calendar month (`BillingPeriod.containing`), on
    both sides of a month's end: for a report of a quantity and for a named event's lines,
    an event time sent with an offset, and on PostgreSQL a session in a time zone 14 hours
    ahead of UTC (where the last hours of May are already June)."""
    june = datetime(2026, 6, 1, tzinfo=UTC)
    named = {"tokens": 7, "user": "u1", "model": "gpt-5", "cached": False}
    named_metrics = ["llm_tokens", "llm_calls", "gpt_tokens", "llm_users", "peak_tokens"]
    times = [
        june - timedelta(microseconds=1),
        june,
        datetime(2026, 6, 1, 1, 30, tzinfo=timezone(timedelta(hours=2))),  # 23:30 UTC, May
        june - timedelta(hours=10),
    ]

    async def run() -> None:
        database = Database(meter_url)
        try:
            kernel = make_kernel(database, Clock(june + timedelta(minutes=1)))
            org_id = new_id()
            async with database.transaction() as conn:
                if database.dialect_name == "postgresql":
                    await conn.execute(text("SET LOCAL TIME ZONE 'Pacific/Kiritimati'"))
                result = await kernel.usage.record_batch(
                    [UsageReport(org_id, "tokens", 5, f"r{n}", at) for n, at in enumerate(times)]
                    + [
                        UsageReport(org_id, None, None, f"n{n}", at, named, "llm.completion")
                        for n, at in enumerate(times)
                    ],
                    uow=UnitOfWork(conn),
                )
                assert result.count(RecordStatus.ACCEPTED) == 2 * len(times)
                lines = usage_lines.c
                found = await conn.execute(
                    select(lines.idempotency_key, lines.metric, lines.period_start).where(
                        lines.org_id == org_id
                    )
                )
                months = {(key, metric): period for key, metric, period in found}
            expected = {
                (f"{kind}{n}", metric): BillingPeriod.containing(at).key
                for n, at in enumerate(times)
                for kind, metrics in (("r", ["tokens"]), ("n", named_metrics))
                for metric in metrics
            }
            assert months == expected
            assert sorted(set(expected.values())) == [date(2026, 5, 1), date(2026, 6, 1)]
        finally:
            await database.dispose()

    asyncio.run(run())


def test_a_latest_takes_the_last_key_by_code_point_whatever_the_database_collation() -> None:
    """Two events of a latest at the same instant: the one whose key is last by code point is
    the month's (as Python compares keys), in the counter, per day and per property value,
    whichever arrives first, on a PostgreSQL database whose collation sorts `B` after `a`
    (ICU's en-US; by code point `B` comes first)."""
    icu = "TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'"
    at = NOW - timedelta(hours=1)
    period = BillingPeriod.containing(at)

    async def run(url: str) -> None:
        database = Database(url)
        try:
            kernel = make_kernel(database, Clock(NOW))
            for meter in METERS:
                await kernel.metrics.define(meter)
            sent = {"a": 1, "B": 2}  # by code point "B" < "a": "a" is the last
            for order in (["a", "B"], ["B", "a"]):
                org_id = new_id()
                for key in order:  # one batch each: the counter takes a later line's value
                    await kernel.usage.record_batch(
                        [
                            UsageReport(
                                org_id,
                                None,
                                None,
                                key,
                                at,
                                {"tokens": sent[key], "user": "u"},
                                "llm.chat",
                            )
                        ]
                    )
                reader = kernel.usage_reader
                assert (await reader.counters(org_id, period))["last_tokens"] == 1
                daily = await reader.daily_totals(org_id, period)
                assert daily[at.date(), "last_tokens"] == 1
                grouped = await reader.grouped_totals(
                    org_id, period, period.next(), "user", by_day=False
                )
                assert grouped[period.key, "last_tokens"] == {"u": 1}
        finally:
            await database.dispose()

    with scratch_postgres_database(icu) as url:
        migrate_with_demo_catalogue(url)
        asyncio.run(run(url))


async def _org(kernel: Kernel, org_id: str) -> None:
    """The org, created by an event that counts nothing."""
    await kernel.usage.record_batch([UsageReport(org_id, "tokens", 0, "first", None)])


async def _paying_org(kernel: Kernel, database: Database, metric: str, now: datetime) -> str:
    """A new active org on a plan of its own that includes 1,000 of `metric`, then charges
    0.01 a unit."""
    plan = Plan(
        slug=new_id("plan"),
        name="Metered",
        currency="USD",
        monthly_price=Decimal("0"),
        metrics={metric: PlanMetric(metric, 1_000, Decimal("0.01"), 1)},
    )
    async with database.transaction() as conn:
        await PlanRepository(UnitOfWork(conn)).create_plan(plan, now)
    org_id = new_id()
    await kernel.orgs.create(org_id, plan_slug=plan.slug)
    await kernel.subscriptions.set_status(org_id, BillingStatus.ACTIVE)
    return org_id


def test_a_max_is_billed_at_its_highest_and_a_late_higher_one_adjusts_the_next_invoice(
    meter_url: str,
) -> None:
    april = BillingPeriod.parse("2026-04")
    may = april.next()

    async def run() -> None:
        database = Database(meter_url)
        try:
            clock = Clock(april.start)
            kernel = make_kernel(database, clock)
            org_id = await _paying_org(kernel, database, "peak_tokens", clock.now)

            async def run_with(key: str, tokens: int, at: datetime | None = None) -> None:
                await kernel.usage.record_batch(
                    [UsageReport(org_id, None, None, key, at, {"tokens": tokens}, "workflow.run")]
                )

            clock.now = april.start + timedelta(days=9)
            for key, tokens in (("a1", 1_500), ("a2", 1_200), ("a3", 700)):
                await run_with(key, tokens)
            assert (await kernel.usage_reader.counters(org_id, april))["peak_tokens"] == 1_500
            clock.now = april.end + timedelta(days=1)
            first = await kernel.invoices.close(org_id, april)
            assert first is not None
            [overage] = [line for line in first.lines if line.metric == "peak_tokens"]
            assert (overage.quantity, str(overage.amount)) == (500, "5.00")  # 1,500: 500 over

            # Late April runs: one under what was billed adds nothing, a higher one the rest.
            clock.advance(hours=1)
            await run_with("late-low", 1_300, april.end - timedelta(days=1))
            upcoming = await kernel.invoices.upcoming(org_id)
            assert [line for line in upcoming.lines if line.kind == "adjustment"] == []
            await run_with("late-high", 1_800, april.end - timedelta(days=1))
            for key, tokens in (("m1", 1_100), ("m2", 900)):
                await run_with(key, tokens)
            clock.now = may.end + timedelta(days=1)
            second = await kernel.invoices.close(org_id, may)
            assert second is not None
            billed = [(line.kind, line.quantity, str(line.amount)) for line in second.lines]
            assert ("overage", 100, "1.00") in billed  # May: its own highest, 1,100
            [adjustment] = [line for line in second.lines if line.kind == "adjustment"]
            assert (adjustment.period_start, adjustment.quantity, str(adjustment.amount)) == (
                april.key,
                300,
                "3.00",
            )
            assert adjustment.formula == (
                "(1,800 - 1,000) x 0.01 = 8 → 8.00, less 5.00 billed → 3.00"
            )
            peaks = [
                (u.period_start, u.quantity, u.events)
                for invoice in (first, second)
                for u in invoice.usage
                if u.metric == "peak_tokens"
            ]
            assert sorted(peaks) == [
                (april.key, 300, 2),  # the late lines: how far they went past what was billed
                (april.key, 1_500, 3),
                (may.key, 1_100, 2),
            ]
            assert await kernel.invoices.verify() == []
        finally:
            await database.dispose()

    asyncio.run(run())


def test_a_latest_is_billed_at_its_last_and_a_late_later_one_adjusts_the_next_invoice(
    meter_url: str,
) -> None:
    april = BillingPeriod.parse("2026-04")
    may = april.next()

    async def run() -> None:
        database = Database(meter_url)
        try:
            clock = Clock(april.start)
            kernel = make_kernel(database, clock)
            org_id = await _paying_org(kernel, database, "last_tokens", clock.now)

            async def retry(key: str, tokens: int, at: datetime) -> None:
                report = UsageReport(
                    org_id, None, None, key, at, {"tokens": tokens}, "workflow.retry"
                )
                [outcome] = (await kernel.usage.record_batch([report])).outcomes
                assert outcome.status is RecordStatus.ACCEPTED

            clock.now = april.start + timedelta(days=21)
            await retry("r2", 1_300, april.start + timedelta(days=20))
            await retry("r1", 1_500, april.start + timedelta(days=9))  # sent last, earlier
            assert (await kernel.usage_reader.counters(org_id, april))["last_tokens"] == 1_300
            clock.now = april.end + timedelta(days=1)
            first = await kernel.invoices.close(org_id, april)
            assert first is not None
            [overage] = [line for line in first.lines if line.metric == "last_tokens"]
            assert (overage.quantity, str(overage.amount)) == (300, "3.00")  # 1,300: 300 over

            # Late April retries: one dated before the billed last changes nothing; one
            # after it is April's last now, and lower: a credit.
            clock.advance(hours=1)
            await retry("late-early", 5_000, april.start + timedelta(days=10))
            upcoming = await kernel.invoices.upcoming(org_id)
            assert [line for line in upcoming.lines if line.kind == "adjustment"] == []
            await retry("late-last", 1_100, april.start + timedelta(days=25))
            await retry("late-before-it", 9_000, april.start + timedelta(days=24))
            assert (await kernel.usage_reader.counters(org_id, april))["last_tokens"] == 1_100
            upcoming = await kernel.invoices.upcoming(org_id)
            assert [str(line.amount) for line in upcoming.lines if line.kind == "adjustment"] == [
                "-2.00"
            ]
            await retry("m1", 1_200, clock.now)
            clock.now = may.end + timedelta(days=1)
            second = await kernel.invoices.close(org_id, may)
            assert second is not None
            billed = [(line.kind, line.quantity, str(line.amount)) for line in second.lines]
            assert ("overage", 200, "2.00") in billed  # May: its last, 1,200
            [adjustment] = [line for line in second.lines if line.kind == "adjustment"]
            assert (adjustment.period_start, adjustment.quantity, str(adjustment.amount)) == (
                april.key,
                -200,
                "-2.00",
            )
            assert adjustment.formula == (
                "(1,100 - 1,000) x 0.01 = 1 → 1.00, less 3.00 billed → -2.00"
            )
            lasts = [
                (u.period_start, u.quantity, u.events, u.last_at)
                for invoice in (first, second)
                for u in invoice.usage
                if u.metric == "last_tokens"
            ]
            assert sorted(lasts) == [
                (april.key, -200, 3, Position(april.start + timedelta(days=25), "late-last")),
                (april.key, 1_300, 2, Position(april.start + timedelta(days=20), "r2")),
                (may.key, 1_200, 1, Position(may.start + timedelta(days=1, hours=1), "m1")),
            ]
            assert await kernel.invoices.verify() == []
        finally:
            await database.dispose()

    asyncio.run(run())
