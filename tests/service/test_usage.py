from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from billing_kernel.errors import IdempotencyConflict, InvalidInput, OrgNotFound, UnknownMetric
from billing_kernel.service import BillingService, RecordStatus
from billing_kernel.store.database import Database
from tests.conftest import Clock, make_service, new_id, row_counts

pytestmark = pytest.mark.anyio


async def used(service: BillingService, org_id: str, metric: str = "tokens") -> int:
    return (await service.get_org_usage_for_current_period(org_id)).used[metric]


async def test_recorded_usage_is_counted_in_the_current_period(service: BillingService) -> None:
    org_id = new_id()
    await service.create_org(org_id)
    first = await service.record_usage(org_id, "tokens", 1_500, idempotency_key="a")
    await service.record_usage(org_id, "tokens", 2_500, idempotency_key="b")
    await service.record_usage(org_id, "playbook_runs", 1, idempotency_key="run-1")
    assert first.status is RecordStatus.ACCEPTED
    assert await used(service, org_id) == 4_000
    assert await used(service, org_id, "playbook_runs") == 1


async def test_the_same_key_twice_counts_once_and_reports_a_duplicate(
    service: BillingService, database: Database, clock: Clock
) -> None:
    org_id = new_id()
    at = clock.now - timedelta(minutes=1)
    await service.record_usage(org_id, "tokens", 700, idempotency_key="k", occurred_at=at)
    before = await row_counts(database)
    again = await service.record_usage(org_id, "tokens", 700, idempotency_key="k", occurred_at=at)
    retried_without_time = await service.record_usage(org_id, "tokens", 700, idempotency_key="k")
    assert again.status is RecordStatus.DUPLICATE
    assert retried_without_time.status is RecordStatus.DUPLICATE
    assert await row_counts(database) == before
    assert await used(service, org_id) == 700


@pytest.mark.parametrize(
    "change",
    [{"quantity": 701}, {"metric": "playbook_runs"}, {"occurred_at_shift": timedelta(seconds=1)}],
)
async def test_the_same_key_with_a_different_payload_is_a_conflict_that_writes_nothing(
    service: BillingService, database: Database, clock: Clock, change: dict[str, Any]
) -> None:
    org_id = new_id()
    at = clock.now - timedelta(minutes=1)
    await service.record_usage(org_id, "tokens", 700, idempotency_key="k", occurred_at=at)
    before = await row_counts(database)
    with pytest.raises(IdempotencyConflict, match="'k'"):
        await service.record_usage(
            org_id,
            change.get("metric", "tokens"),
            change.get("quantity", 700),
            idempotency_key="k",
            occurred_at=at + change.get("occurred_at_shift", timedelta(0)),
        )
    assert await row_counts(database) == before
    assert await used(service, org_id) == 700


async def test_idempotency_keys_are_per_org(service: BillingService) -> None:
    a, b = new_id(), new_id()
    await service.record_usage(a, "tokens", 5, idempotency_key="shared")
    assert (await service.record_usage(b, "tokens", 7, idempotency_key="shared")).status is (
        RecordStatus.ACCEPTED
    )
    assert (await used(service, a), await used(service, b)) == (5, 7)


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
    service: BillingService,
    clock: Clock,
    now: datetime,
    before_boundary: datetime,
    after_boundary: datetime,
) -> None:
    org_id = new_id()
    clock.now = now
    late = await service.record_usage(
        org_id, "tokens", 3, idempotency_key="late", occurred_at=before_boundary
    )
    early = await service.record_usage(
        org_id, "tokens", 4, idempotency_key="early", occurred_at=after_boundary
    )
    assert late.event.period.next() == early.event.period
    assert await used(service, org_id) == 4
    clock.now = before_boundary  # read the previous month
    assert await used(service, org_id) == 3
    stored = await service.get_org_usage_for_current_period(org_id)
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
    service: BillingService,
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
        await service.record_usage(
            fields["org_id"],
            fields["metric"],
            fields["quantity"],
            idempotency_key=fields["idempotency_key"],
            occurred_at=fields["occurred_at"],
        )
    assert await row_counts(database) == before


async def test_the_first_event_of_an_unknown_org_creates_and_seeds_it(
    service: BillingService, clock: Clock
) -> None:
    org_id = new_id()
    await service.record_usage(org_id, "tokens", 9, idempotency_key="first")
    state = await service.get_org_billing_state(org_id)
    assert (state.plan_slug, state.status.value, state.created_at) == (
        "internal-dev",
        "trial",
        clock.now,
    )
    assert await used(service, org_id) == 9


async def test_without_auto_create_an_unknown_org_is_refused_and_nothing_written(
    database: Database, clock: Clock
) -> None:
    service = make_service(database, clock, auto_create_orgs=False)
    before = await row_counts(database)
    with pytest.raises(OrgNotFound, match="BILLING_AUTO_CREATE_ORGS"):
        await service.record_usage(new_id(), "tokens", 9, idempotency_key="first")
    assert await row_counts(database) == before


async def test_best_effort_updates_count_once_per_key_and_never_raise(
    service: BillingService,
) -> None:
    org_id = new_id()
    increments = {"tokens": 1_200, "playbook_runs": 1}
    assert await service.update_usage_counters(org_id, increments, idempotency_key="call-1")
    assert await service.update_usage_counters(org_id, increments, idempotency_key="call-1")
    assert await used(service, org_id) == 1_200
    assert await used(service, org_id, "playbook_runs") == 1

    assert await service.update_usage_counters(org_id, {"gpu_hours": 3}) is False
    assert await service.update_usage_counters(org_id, {"tokens": -5}) is False
    assert service.tracking_failures == 2
    assert await used(service, org_id) == 1_200


async def test_best_effort_updates_survive_an_unreachable_database(clock: Clock) -> None:
    unreachable = Database("postgresql://postgres@127.0.0.1:9/billing")  # nothing listens on 9
    service = make_service(unreachable, clock)
    try:
        assert await service.update_usage_counters("org-1", {"tokens": 5}) is False
        assert service.tracking_failures == 1
    finally:
        await unreachable.dispose()
