import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from billing_kernel.db.database import Database
from billing_kernel.errors import IdempotencyConflict, InvalidInput, OrgNotFound, UnknownMetric
from billing_kernel.kernel import Kernel
from billing_kernel.usage.rules import RecordStatus, UsageReport
from tests.conftest import Clock, make_kernel, new_id, row_counts

pytestmark = pytest.mark.anyio


async def used(kernel: Kernel, org_id: str, metric: str = "tokens") -> int:
    return (await kernel.summary.period_usage(org_id)).used[metric]


async def test_recorded_usage_is_counted_in_the_current_period(kernel: Kernel) -> None:
    org_id = new_id()
    await kernel.orgs.create(org_id)
    first = await kernel.usage.record(org_id, "tokens", 1_500, idempotency_key="a")
    await kernel.usage.record(org_id, "tokens", 2_500, idempotency_key="b")
    await kernel.usage.record(org_id, "playbook_runs", 1, idempotency_key="run-1")
    assert first.status is RecordStatus.ACCEPTED
    assert await used(kernel, org_id) == 4_000
    assert await used(kernel, org_id, "playbook_runs") == 1


async def test_the_same_key_twice_counts_once_and_reports_a_duplicate(
    kernel: Kernel, database: Database, clock: Clock
) -> None:
    org_id = new_id()
    at = clock.now - timedelta(minutes=1)
    await kernel.usage.record(org_id, "tokens", 700, idempotency_key="k", occurred_at=at)
    before = await row_counts(database)
    again = await kernel.usage.record(org_id, "tokens", 700, idempotency_key="k", occurred_at=at)
    retried_without_time = await kernel.usage.record(org_id, "tokens", 700, idempotency_key="k")
    assert again.status is RecordStatus.DUPLICATE
    assert retried_without_time.status is RecordStatus.DUPLICATE
    assert await row_counts(database) == before
    assert await used(kernel, org_id) == 700


async def test_a_retry_stamped_in_the_next_month_is_still_a_duplicate(
    kernel: Kernel, database: Database, clock: Clock
) -> None:
    """An event sent without a time is stamped when it arrives: a retry of it that arrives
    after midnight at the month's end falls in another month (another partition of the
    events on PostgreSQL), and is still the same event, counted once in the first month."""
    org_id = new_id()
    clock.now = datetime(2026, 5, 31, 23, 59, 59, 900_000, tzinfo=UTC)
    first = await kernel.usage.record(org_id, "tokens", 700, idempotency_key="late")
    assert first.status is RecordStatus.ACCEPTED
    before = await row_counts(database)
    clock.now = datetime(2026, 6, 1, 0, 0, 0, 100_000, tzinfo=UTC)
    retried = await kernel.usage.record(org_id, "tokens", 700, idempotency_key="late")
    assert retried.status is RecordStatus.DUPLICATE
    assert await row_counts(database) == before
    batch = await kernel.usage.record_batch(
        [
            UsageReport(org_id, "tokens", 700, "late", None, None),
            UsageReport(org_id, "tokens", 1, "june", None, None),
        ]
    )
    assert [o.status for o in batch.outcomes] == [RecordStatus.DUPLICATE, RecordStatus.ACCEPTED]
    assert await used(kernel, org_id) == 1  # June's
    clock.now = datetime(2026, 5, 31, 23, 59, 59, 990_000, tzinfo=UTC)
    assert await used(kernel, org_id) == 700


@pytest.mark.parametrize(
    "change",
    [{"quantity": 701}, {"metric": "playbook_runs"}, {"occurred_at_shift": timedelta(seconds=1)}],
)
async def test_the_same_key_with_a_different_payload_is_a_conflict_that_writes_nothing(
    kernel: Kernel, database: Database, clock: Clock, change: dict[str, Any]
) -> None:
    org_id = new_id()
    at = clock.now - timedelta(minutes=1)
    await kernel.usage.record(org_id, "tokens", 700, idempotency_key="k", occurred_at=at)
    before = await row_counts(database)
    with pytest.raises(IdempotencyConflict, match="'k'"):
        await kernel.usage.record(
            org_id,
            change.get("metric", "tokens"),
            change.get("quantity", 700),
            idempotency_key="k",
            occurred_at=at + change.get("occurred_at_shift", timedelta(0)),
        )
    assert await row_counts(database) == before
    assert await used(kernel, org_id) == 700


async def test_idempotency_keys_are_per_org(kernel: Kernel) -> None:
    a, b = new_id(), new_id()
    await kernel.usage.record(a, "tokens", 5, idempotency_key="shared")
    assert (await kernel.usage.record(b, "tokens", 7, idempotency_key="shared")).status is (
        RecordStatus.ACCEPTED
    )
    assert (await used(kernel, a), await used(kernel, b)) == (5, 7)


@pytest.mark.parametrize(
    ("now", "before_boundary", "after_boundary"),
    [
        (  # the end of an ordinary month
            datetime(2026, 5, 1, 0, 1, tzinfo=UTC),
            datetime(2026, 4, 30, 23, 59, 59, 999_999, tzinfo=UTC),
            datetime(2026, 5, 1, tzinfo=UTC),
        ),
        (  # December into January
            datetime(2026, 1, 1, 0, 1, tzinfo=UTC),
            datetime(2025, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
            datetime(2026, 1, 1, tzinfo=UTC),
        ),
        (  # leap February into March
            datetime(2028, 3, 1, 0, 1, tzinfo=UTC),
            datetime(2028, 2, 29, 23, 59, 59, 999_999, tzinfo=UTC),
            datetime(2028, 3, 1, tzinfo=UTC),
        ),
    ],
)
async def test_the_event_time_decides_the_period_to_the_microsecond(
    kernel: Kernel,
    clock: Clock,
    now: datetime,
    before_boundary: datetime,
    after_boundary: datetime,
) -> None:
    org_id = new_id()
    clock.now = now
    late = await kernel.usage.record(
        org_id, "tokens", 3, idempotency_key="late", occurred_at=before_boundary
    )
    early = await kernel.usage.record(
        org_id, "tokens", 4, idempotency_key="early", occurred_at=after_boundary
    )
    assert late.event.period.next() == early.event.period
    assert await used(kernel, org_id) == 4
    clock.now = before_boundary  # read the previous month
    assert await used(kernel, org_id) == 3
    stored = await kernel.summary.period_usage(org_id)
    assert stored.period.key == date(before_boundary.year, before_boundary.month, 1)


BAD_EVENTS: list[tuple[dict[str, Any], type[Exception], str]] = [
    ({"quantity": -1}, InvalidInput, "negative"),
    ({"quantity": 2.5}, InvalidInput, "whole number"),
    ({"quantity": 10**13}, InvalidInput, "maximum"),
    ({"metric": "gpu_hours"}, UnknownMetric, "unknown metric"),
    ({"metric": "seats"}, InvalidInput, "org members"),
    ({"occurred_at": timedelta(minutes=6)}, InvalidInput, "future"),
    ({"occurred_at": -timedelta(days=36)}, InvalidInput, "older than 35 days"),
    ({"idempotency_key": ""}, InvalidInput, "non-empty"),
    ({"org_id": "x" * 65}, InvalidInput, "longer than 64"),
]


@pytest.mark.parametrize(("bad", "error", "message"), BAD_EVENTS)
async def test_bad_input_is_refused_and_writes_nothing(
    kernel: Kernel,
    database: Database,
    clock: Clock,
    bad: dict[str, Any],
    error: type[Exception],
    message: str,
) -> None:
    fields: dict[str, Any] = {
        "org_id": new_id(),
        "metric": "tokens",
        "quantity": 10,
        "idempotency_key": "k",
        "occurred_at": None,
    }
    fields.update(bad)
    if isinstance(fields["occurred_at"], timedelta):
        fields["occurred_at"] = clock.now + fields["occurred_at"]
    before = await row_counts(database)
    with pytest.raises(error, match=message):
        await kernel.usage.record(
            fields["org_id"],
            fields["metric"],
            fields["quantity"],
            idempotency_key=fields["idempotency_key"],
            occurred_at=fields["occurred_at"],
        )
    assert await row_counts(database) == before


async def test_the_first_event_of_an_unknown_org_creates_and_seeds_it(
    kernel: Kernel, clock: Clock
) -> None:
    org_id = new_id()
    await kernel.usage.record(org_id, "tokens", 9, idempotency_key="first")
    state = await kernel.subscriptions.billing_state(org_id)
    assert (state.plan_slug, state.status.value, state.created_at) == (
        "internal-dev",
        "trial",
        clock.now,
    )
    assert await used(kernel, org_id) == 9


async def test_without_auto_create_an_unknown_org_is_refused_and_nothing_written(
    database: Database, clock: Clock
) -> None:
    kernel = make_kernel(database, clock, auto_create_orgs=False)
    before = await row_counts(database)
    with pytest.raises(OrgNotFound, match="BILLING_AUTO_CREATE_ORGS"):
        await kernel.usage.record(new_id(), "tokens", 9, idempotency_key="first")
    assert await row_counts(database) == before


async def test_best_effort_updates_count_once_per_key_and_never_raise(
    kernel: Kernel,
) -> None:
    org_id = new_id()
    increments = {"tokens": 1_200, "playbook_runs": 1}
    assert await kernel.usage.update_counters(org_id, increments, idempotency_key="call-1")
    assert await kernel.usage.update_counters(org_id, increments, idempotency_key="call-1")
    assert await used(kernel, org_id) == 1_200
    assert await used(kernel, org_id, "playbook_runs") == 1

    assert await kernel.usage.update_counters(org_id, {"gpu_hours": 3}) is False
    assert await kernel.usage.update_counters(org_id, {"tokens": -5}) is False
    assert kernel.usage.tracking_failures == 2
    assert await used(kernel, org_id) == 1_200


async def test_best_effort_updates_survive_an_unreachable_database(clock: Clock) -> None:
    unreachable = Database("postgresql://postgres@127.0.0.1:9/billing")  # nothing listens on 9
    kernel = make_kernel(unreachable, clock)
    try:
        assert await kernel.usage.update_counters("org-1", {"tokens": 5}) is False
        assert kernel.usage.tracking_failures == 1
    finally:
        await unreachable.dispose()


async def test_an_export_reads_an_orgs_events_a_page_per_transaction_each_once(
    kernel: Kernel, clock: Clock
) -> None:
    org_id = new_id()
    await kernel.orgs.create(org_id)
    same_time = clock.now - timedelta(minutes=1)
    for key in ("b", "a", "c", "e", "d"):  # one instant: key order decides
        await kernel.usage.record(org_id, "tokens", 1, idempotency_key=key, occurred_at=same_time)
    pages = [page async for page in kernel.usage_reader.all_events(org_id, page=2)]
    assert [[e.idempotency_key for e in page] for page in pages] == [
        ["a", "b"],
        ["c", "d"],
        ["e"],
    ]
    assert [page async for page in kernel.usage_reader.all_events(org_id, metric="seats")] == []
    with pytest.raises(UnknownMetric):
        await kernel.usage_reader.events(org_id, metric="nope")
    with pytest.raises(OrgNotFound):
        await kernel.usage_reader.events(new_id())


async def test_every_column_of_a_batch_is_stored_as_sent_whatever_its_text_holds(
    kernel: Kernel, clock: Clock
) -> None:
    """A batch's text columns travel to PostgreSQL as one string each, its values separated
    by U+001F (none stands for U+001E): values holding such characters, escaped in JSON, or
    empty, none at all, and one event alone, each come back as they were sent."""
    org_id = new_id()
    at = clock.now - timedelta(minutes=1)
    kept = [
        ("k-\u00e9\u00fc", {"note": "a\x1fb\x1ec", "n": None}),
        ("k,2", None),
        ("k|3", {}),
        ("k \u20ac4", {"s": ""}),
        ("k5", None),
    ]
    for batch in ([kept[0]], [kept[1]], kept[2:]):
        result = await kernel.usage.record_batch(
            [UsageReport(org_id, "tokens", 3, key, at, properties) for key, properties in batch]
        )
        assert [o.status for o in result.outcomes] == [RecordStatus.ACCEPTED] * len(batch)
    stored = {e.idempotency_key: e for e in await kernel.usage_reader.events(org_id, limit=10)}
    assert {key: (e.quantity, e.occurred_at) for key, e in stored.items()} == {
        key: (3, at) for key, _ in kept
    }
    assert {
        key: None if e.properties is None else json.loads(e.properties) for key, e in stored.items()
    } == dict(kept)


async def test_repeats_are_judged_in_sql_exactly_as_the_rule_says(
    kernel: Kernel, clock: Clock
) -> None:
    """Every way a repeat can differ from what is stored (metric, quantity, properties, time;
    each sender giving a time or not), stored by an earlier batch (compared by the insert
    that skipped it) or earlier in the same batch (compared after it): DUPLICATE exactly
    when `UsageEvent.is_replay_of` says it repeats the stored event."""
    org_id = new_id()
    at = clock.now - timedelta(minutes=2)
    kept = {"model": "a"}
    grid = [
        (metric, quantity, properties, moment, stored_given, sent_given)
        for metric in ("tokens", "playbook_runs")
        for quantity in (5, 6)
        for properties in (kept, {"model": "b"}, None)
        for moment in (at, at - timedelta(microseconds=1))
        for stored_given in (True, False)
        for sent_given in (True, False)
    ]

    def firsts(prefix: str) -> list[UsageReport]:
        return [
            UsageReport(org_id, "tokens", 5, f"{prefix}-{n}", at if stored_given else None, kept)
            for n, (*_, stored_given, _) in enumerate(grid)
        ]

    def repeats(prefix: str) -> list[UsageReport]:
        return [
            UsageReport(
                org_id, metric, quantity, f"{prefix}-{n}", moment if given else None, properties
            )
            for n, (metric, quantity, properties, moment, _, given) in enumerate(grid)
        ]

    stored = await kernel.usage.record_batch(firsts("a"))
    later = await kernel.usage.record_batch(repeats("a"))
    same_batch = await kernel.usage.record_batch(firsts("b") + repeats("b"))
    expected = []
    for first, repeat in zip(stored.outcomes, later.outcomes, strict=True):
        assert first.event is not None
        assert repeat.event is not None
        expected.append(
            RecordStatus.DUPLICATE
            if repeat.event.is_replay_of(first.event)
            else RecordStatus.REFUSED
        )
    assert [o.status for o in later.outcomes] == expected
    assert [o.status for o in same_batch.outcomes] == [RecordStatus.ACCEPTED] * len(grid) + expected
    # The same metric, quantity and properties: a repeat, unless both gave a time and the
    # times differ.
    assert expected.count(RecordStatus.DUPLICATE) == 7
    assert all(
        isinstance(o.error, IdempotencyConflict)
        for o in [*later.outcomes, *same_batch.outcomes]
        if o.status is RecordStatus.REFUSED
    )
    assert await used(kernel, org_id) == 2 * len(grid) * 5
