"""Usage alerts through the services, on both databases: each threshold crossed once by
whatever write reached it, in the write's transaction; resolved by a change of limit."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import select

from billing_kernel.alerts.rules import Threshold
from billing_kernel.common.periods import BillingPeriod
from billing_kernel.db.database import Database
from billing_kernel.db.tables import billing_events
from billing_kernel.errors import InvalidInput, MetricNotInPlan, OrgNotFound, UnknownMetric
from billing_kernel.events.rules import EventType
from billing_kernel.kernel import Kernel
from billing_kernel.plans.rules import Enforcement, Policy
from billing_kernel.usage.rules import UsageReport
from tests.conftest import Clock, new_id, save_plan

pytestmark = pytest.mark.anyio


async def org_on_plan(kernel: Kernel, database: Database, clock: Clock) -> str:
    """A new org on a plan of its own: 500 tokens included."""
    plan = await save_plan(database, clock())
    org_id = new_id()
    await kernel.orgs.create(org_id, name="Acme", plan_slug=plan.slug)
    return org_id


async def use(kernel: Kernel, org_id: str, quantity: int, metric: str = "tokens") -> None:
    await kernel.usage.record(org_id, metric, quantity, idempotency_key=new_id("event"))


async def alerts(kernel: Kernel, org_id: str) -> list[tuple[str, str | None, int, int | None]]:
    """The org's events, oldest first: (type, threshold key, used, limit)."""
    found = [event for _, event in await kernel.events.events(org_id=org_id, limit=100)]
    return [
        (
            str(e.event_type),
            _key(e.data),
            int(str(e.data["used"])),
            None if e.data["limit"] is None else int(str(e.data["limit"])),
        )
        for e in reversed(found)
    ]


def _key(data: dict[str, object]) -> str | None:
    threshold = data.get("threshold")
    return None if not isinstance(threshold, dict) else str(threshold["key"])


CROSSED = str(EventType.THRESHOLD_CROSSED)
RESOLVED = str(EventType.THRESHOLD_RESOLVED)
BLOCKED = str(EventType.QUOTA_BLOCKED)


async def test_single_events_cross_80_and_100_percent_once_each(
    kernel: Kernel, database: Database, clock: Clock
) -> None:
    org_id = await org_on_plan(kernel, database, clock)
    await use(kernel, org_id, 399)
    assert await alerts(kernel, org_id) == []
    await use(kernel, org_id, 1)  # 400 of 500: 80 %
    await use(kernel, org_id, 50)
    await use(kernel, org_id, 50)  # 500: 100 %
    await use(kernel, org_id, 700)
    assert await alerts(kernel, org_id) == [(CROSSED, "80%", 400, 500), (CROSSED, "100%", 500, 500)]


async def test_one_write_past_both_thresholds_crosses_both_with_its_figures(
    kernel: Kernel, database: Database, clock: Clock
) -> None:
    org_id = await org_on_plan(kernel, database, clock)
    await use(kernel, org_id, 600)
    assert await alerts(kernel, org_id) == [(CROSSED, "80%", 600, 500), (CROSSED, "100%", 600, 500)]
    [(_, late), (_, early)] = await kernel.events.events(org_id=org_id)
    assert {early.data["threshold"]["percent"], late.data["threshold"]["percent"]} == {80, 100}  # type: ignore[index]
    assert early.data["period"] == {"start": "2026-05-01", "end": "2026-06-01"}
    payload = early.payload()
    assert payload["id"] == early.event_id
    assert early.event_id.startswith("evt_")
    assert payload["timestamp"] == "2026-05-15T12:00:00Z"


async def test_a_batch_crosses_each_orgs_thresholds_once(
    kernel: Kernel, database: Database, clock: Clock
) -> None:
    a, b = await org_on_plan(kernel, database, clock), await org_on_plan(kernel, database, clock)
    batch = [UsageReport(a, "tokens", 100, new_id("e")) for _ in range(5)]
    batch += [UsageReport(b, "tokens", 100, new_id("e")) for _ in range(4)]
    result = await kernel.usage.record_batch(batch)
    assert all(o.error is None for o in result.outcomes)
    await kernel.usage.record_batch(batch)  # replayed: duplicates, no new alert
    assert await alerts(kernel, a) == [(CROSSED, "80%", 500, 500), (CROSSED, "100%", 500, 500)]
    assert await alerts(kernel, b) == [(CROSSED, "80%", 400, 500)]


async def test_consumes_and_a_reservations_commit_cross_thresholds(
    kernel: Kernel, database: Database, clock: Clock
) -> None:
    org_id = await org_on_plan(kernel, database, clock)
    await kernel.quota.consume(org_id, "tokens", 450, idempotency_key=new_id("c"))
    assert await alerts(kernel, org_id) == [(CROSSED, "80%", 450, 500)]
    reserved = await kernel.quota.reserve(org_id, "tokens", 10, idempotency_key=new_id("r"))
    assert await alerts(kernel, org_id) == [(CROSSED, "80%", 450, 500)]  # a hold is not usage
    await kernel.reservations.commit(reserved.reservation.reservation_id, 60)
    assert (await alerts(kernel, org_id))[1:] == [(CROSSED, "100%", 510, 500)]


async def test_a_seat_peak_crosses_an_absolute_threshold(
    kernel: Kernel, database: Database, clock: Clock
) -> None:
    org_id = await org_on_plan(kernel, database, clock)
    await kernel.alerts.set_thresholds(org_id, "seats", [Threshold(quantity=2)])
    await kernel.members.add(org_id, new_id("user"), "owner")
    assert await alerts(kernel, org_id) == []
    await kernel.members.add(org_id, new_id("user"), "member")
    # The plan does not name seats: it gives none (limit 0); an absolute threshold still holds.
    assert await alerts(kernel, org_id) == [(CROSSED, "2", 2, 0)]


async def test_an_upgrade_resolves_and_usage_crosses_again_under_the_new_limit(
    kernel: Kernel, database: Database, clock: Clock
) -> None:
    org_id = await org_on_plan(kernel, database, clock)
    await use(kernel, org_id, 500)
    await kernel.subscriptions.set_plan(org_id, "starter")  # 1,000,000 tokens
    assert (await alerts(kernel, org_id))[2:] == [
        (RESOLVED, "80%", 500, 1_000_000),
        (RESOLVED, "100%", 500, 1_000_000),
    ]
    await use(kernel, org_id, 800_000)
    assert (await alerts(kernel, org_id))[4:] == [(CROSSED, "80%", 800_500, 1_000_000)]
    ids = [e.event_id for _, e in await kernel.events.events(org_id=org_id)]
    assert len(set(ids)) == 5  # the second crossing of 80 % is an alert of its own


async def test_a_new_period_alerts_again(kernel: Kernel, database: Database, clock: Clock) -> None:
    org_id = await org_on_plan(kernel, database, clock)
    await use(kernel, org_id, 500)
    clock.advance(days=30)  # June
    await use(kernel, org_id, 400)
    events = await kernel.events.events(org_id=org_id)
    assert [e.data["period"]["start"] for _, e in reversed(events)] == [  # type: ignore[index]
        "2026-05-01",
        "2026-05-01",
        "2026-06-01",
    ]


async def test_an_override_moves_thresholds_both_ways(
    kernel: Kernel, database: Database, clock: Clock
) -> None:
    org_id = await org_on_plan(kernel, database, clock)
    await use(kernel, org_id, 300)  # 60 %
    events = await kernel.alerts.set_thresholds(
        org_id, "tokens", [Threshold(percent=50), Threshold(percent=150), Threshold(quantity=1000)]
    )
    assert [(str(e.event_type), e.data["threshold"]["key"]) for e in events] == [  # type: ignore[index]
        (CROSSED, "50%")
    ]
    await kernel.quota.set_override(org_id, "tokens", 200)  # 300 of 200: 150 %
    await use(kernel, org_id, 700)  # 1,000
    assert (await alerts(kernel, org_id)) == [
        (CROSSED, "50%", 300, 500),
        (CROSSED, "150%", 300, 200),
        (CROSSED, "1000", 1000, 200),
    ]
    await kernel.quota.clear_override(org_id, "tokens")  # 1,000 of 500: still 150 % and more
    await kernel.alerts.set_thresholds(org_id, "tokens", [])  # none: each resolved
    assert sorted(k for t, k, *_ in (await alerts(kernel, org_id))[3:] if t == RESOLVED) == [
        "1000",
        "150%",
        "50%",
    ]
    await kernel.alerts.set_thresholds(org_id, "tokens", None)  # the plan's again: 80, 100 %
    assert (await alerts(kernel, org_id))[6:] == [
        (CROSSED, "80%", 1000, 500),
        (CROSSED, "100%", 1000, 500),
    ]


async def test_thresholds_are_validated_and_need_an_org_and_a_metric(
    kernel: Kernel, database: Database, clock: Clock
) -> None:
    org_id = await org_on_plan(kernel, database, clock)
    with pytest.raises(InvalidInput):
        await kernel.alerts.set_thresholds(
            org_id, "tokens", [Threshold(quantity=n) for n in range(1, 12)]
        )
    with pytest.raises(OrgNotFound):
        await kernel.alerts.set_thresholds(new_id(), "tokens", [])
    with pytest.raises(UnknownMetric):
        await kernel.alerts.set_thresholds(org_id, "nope", [])
    with pytest.raises(MetricNotInPlan):
        await kernel.alerts.set_plan_thresholds("starter", "nope", [])


async def test_a_plans_thresholds_apply_to_its_orgs_without_their_own(
    kernel: Kernel, database: Database, clock: Clock
) -> None:
    plan = await save_plan(database, clock())
    a, b = new_id(), new_id()
    for org_id in (a, b):
        await kernel.orgs.create(org_id, plan_slug=plan.slug)
        await use(kernel, org_id, 260)
    await kernel.alerts.set_thresholds(b, "tokens", [Threshold(percent=90)])
    events = await kernel.alerts.set_plan_thresholds(plan.slug, "tokens", [Threshold(percent=50)])
    assert [(e.org_id, e.data["threshold"]["key"]) for e in events] == [(a, "50%")]  # type: ignore[index]
    assert (await kernel.alerts.plan_thresholds(plan.slug)) == {"tokens": (Threshold(percent=50),)}
    mine = await kernel.alerts.thresholds(b)
    assert mine["tokens"] == ((Threshold(percent=90),), 500, True)
    assert (await kernel.alerts.thresholds(a))["tokens"] == ((Threshold(percent=50),), 500, False)


async def test_a_hard_block_is_an_event_once_per_period(
    kernel: Kernel, database: Database, clock: Clock
) -> None:
    org_id = await org_on_plan(kernel, database, clock)
    plan = (await kernel.subscriptions.billing_state(org_id)).plan_slug
    await kernel.plans.set_policy(plan, "tokens", Policy(Enforcement.HARD))
    await kernel.quota.consume(org_id, "tokens", 400, idempotency_key=new_id("c"))
    big = await kernel.quota.consume(org_id, "tokens", 200, idempotency_key=new_id("c"))
    assert not big.decision.allowed  # too big, but 100 are left: no block
    assert [t for t, *_ in await alerts(kernel, org_id)] == [CROSSED]
    await kernel.quota.consume(org_id, "tokens", 100, idempotency_key=new_id("c"))
    for _ in range(3):
        refused = await kernel.quota.consume(org_id, "tokens", 1, idempotency_key=new_id("c"))
        assert not refused.decision.allowed
    assert [t for t, *_ in await alerts(kernel, org_id)] == [CROSSED, CROSSED, BLOCKED]
    await kernel.quota.set_override(org_id, "tokens", 600)  # unblocked, without an event
    await kernel.quota.consume(org_id, "tokens", 100, idempotency_key=new_id("c"))
    await kernel.quota.consume(org_id, "tokens", 1, idempotency_key=new_id("c"))
    kinds = [t for t, *_ in await alerts(kernel, org_id)]
    assert kinds.count(BLOCKED) == 2


async def test_events_are_stored_as_the_documented_json(
    kernel: Kernel, database: Database, clock: Clock
) -> None:
    org_id = await org_on_plan(kernel, database, clock)
    await use(kernel, org_id, 400)
    async with database.transaction() as conn:
        [stored] = (
            await conn.execute(
                select(billing_events.c.payload).where(billing_events.c.org_id == org_id)
            )
        ).scalars()
    body = json.loads(stored)
    assert set(body) == {"type", "id", "timestamp", "data"}
    assert body["data"] == {
        "org_id": org_id,
        "metric": "tokens",
        "used": 400,
        "limit": 500,
        "period": {"start": "2026-05-01", "end": "2026-06-01"},
        "threshold": {"key": "80%", "percent": 80, "quantity": 400},
    }
    period = BillingPeriod.containing(clock())
    [state] = await kernel.alerts.states(org_id, period)
    assert (state.threshold, state.status, state.crossings) == ("80%", "crossed", 1)
    assert await kernel.alerts.dismiss(org_id, "tokens", "80%", period)
    assert not await kernel.alerts.dismiss(org_id, "tokens", "100%", period)
    clock.advance(seconds=1)
    [state] = await kernel.alerts.states(org_id, period)
    assert state.dismissed_at == clock() - timedelta(seconds=1)


async def test_a_metric_limited_only_by_the_orgs_override_alerts_at_the_default_thresholds(
    kernel: Kernel, database: Database, clock: Clock
) -> None:
    org_id = await org_on_plan(kernel, database, clock)  # its plan names tokens only
    await use(kernel, org_id, 70, "playbook_runs")  # unlimited: no alert
    assert await alerts(kernel, org_id) == []
    await kernel.quota.set_override(org_id, "playbook_runs", 100)  # 70 of 100
    await use(kernel, org_id, 15, "playbook_runs")  # 85 %
    await use(kernel, org_id, 20, "playbook_runs")  # 105 %
    assert await alerts(kernel, org_id) == [
        (CROSSED, "80%", 85, 100),
        (CROSSED, "100%", 105, 100),
    ]
    await kernel.quota.set_override(org_id, "playbook_runs", None)  # unlimited: resolved
    await use(kernel, org_id, 1000, "playbook_runs")  # and nothing more to cross
    assert (await alerts(kernel, org_id))[2:] == [
        (RESOLVED, "80%", 105, None),
        (RESOLVED, "100%", 105, None),
    ]
