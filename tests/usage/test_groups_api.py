"""Usage grouped by an event property (tokens by model), per month and per day, in JSON
and CSV, on both databases; and properties as part of an event's payload."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest

from billing_kernel.auth.rules import Scope
from billing_kernel.common.periods import BillingPeriod
from billing_kernel.usage.rules import RecordStatus, UsageReport
from tests.conftest import new_id
from tests.web import Api

pytestmark = pytest.mark.anyio


async def test_usage_grouped_by_a_property_per_month_and_per_day(api: Api) -> None:
    admin = await api.key(Scope.BILLING_ADMIN)
    org_id = new_id()
    await api.kernel.orgs.create(org_id, plan_slug="starter")
    now = datetime.now(UTC)
    month = BillingPeriod.containing(now)
    earlier = max(month.start, now - timedelta(days=1))
    sent = [
        ("a", 100, {"model": "gpt-5"}, now),
        ("b", 40, {"model": "claude", "cached": True}, now),
        ("c", 60, {"model": "gpt-5", "cached": False}, earlier),
        ("d", 7, None, now),
        ("e", 3, {"model": None}, now),
        ("f", 2, {"model": 4}, now),
    ]
    result = await api.kernel.usage.record_batch(
        [UsageReport(org_id, "tokens", q, key, at, props) for key, q, props, at in sent]
        + [UsageReport(org_id, "playbook_runs", 1, "run", now, {"model": "gpt-5"})]
    )
    assert result.count(RecordStatus.ACCEPTED) == 7
    url = f"/api/v1/orgs/{org_id}/usage"
    answer = await api.client.get(url, params={"group_by": "model"}, headers=admin)
    assert answer.status_code == 200, answer.text
    [point] = answer.json()["data"]
    assert point["usage"]["tokens"] == 212
    assert point["groups"]["tokens"] == [
        {"value": "gpt-5", "quantity": 160},
        {"value": "claude", "quantity": 40},
        {"value": None, "quantity": 10},  # without the property, or null
        {"value": "4", "quantity": 2},
    ]
    assert point["groups"]["playbook_runs"] == [{"value": "gpt-5", "quantity": 1}]
    assert point["groups"]["seats"] == []  # seats are not counted from events
    cached = await api.client.get(url, params={"group_by": "cached"}, headers=admin)
    assert cached.json()["data"][0]["groups"]["tokens"] == [
        {"value": None, "quantity": 112},
        {"value": "false", "quantity": 60},
        {"value": "true", "quantity": 40},
    ]
    plain = await api.client.get(url, headers=admin)
    assert plain.json()["data"][0]["groups"] is None

    daily = await api.client.get(
        url, params={"group_by": "model", "granularity": "day"}, headers=admin
    )
    by_day = {p["start"]: p["groups"]["tokens"] for p in daily.json()["data"]}
    today = by_day[now.date().isoformat()]
    if earlier.date() != now.date():
        assert by_day[earlier.date().isoformat()] == [{"value": "gpt-5", "quantity": 60}]
        assert today[0] == {"value": "gpt-5", "quantity": 100}
    assert sum(g["quantity"] for g in today) == 212 - (60 if earlier.date() != now.date() else 0)

    export = await api.client.get(f"{url}.csv", params={"group_by": "model"}, headers=admin)
    rows = list(csv.reader(io.StringIO(export.text)))
    assert rows[0] == ["start", "end", "metric", "model", "quantity"]
    assert [r[2:] for r in rows[1:] if r[2] == "tokens"] == [
        ["tokens", "gpt-5", "160"],
        ["tokens", "claude", "40"],
        ["tokens", "", "10"],
        ["tokens", "4", "2"],
    ]
    for bad in ("", "a b", 'x"y', "m" * 65):
        refused = await api.client.get(url, params={"group_by": bad}, headers=admin)
        assert refused.status_code == 422, bad


async def test_properties_are_part_of_the_payload_a_repeat_must_carry(api: Api) -> None:
    writer = await api.key(Scope.USAGE_WRITE)
    org_id = new_id()

    def batch(**properties: object) -> dict[str, object]:
        event = {"org_id": org_id, "metric": "tokens", "quantity": 5, "idempotency_key": "k"}
        return {"events": [{**event, "properties": properties or None}]}

    ingest = "/api/v1/usage/events"
    first = await api.client.post(ingest, json=batch(model="gpt-5", n=1), headers=writer)
    assert first.json()["accepted"] == 1
    # The same properties in another order: the same payload.
    again = await api.client.post(ingest, json=batch(n=1, model="gpt-5"), headers=writer)
    assert again.json()["duplicates"] == 1
    for other in ({"model": "claude", "n": 1}, {"model": "gpt-5"}, {}):
        refused = await api.client.post(ingest, json=batch(**other), headers=writer)
        [result] = refused.json()["results"]
        assert result["error"]["code"] == "idempotency_conflict", other
    too_long = batch(text="x" * 5000)
    [result] = (await api.client.post(ingest, json=too_long, headers=writer)).json()["results"]
    assert result["error"] == {
        "code": "invalid_input",
        "detail": "properties are longer than 4096 characters as JSON",
    }
    events = await api.client.get(
        f"/api/v1/orgs/{org_id}/events", headers=await api.key(Scope.BILLING_ADMIN)
    )
    assert [e["properties"] for e in events.json()["data"]] == [{"model": "gpt-5", "n": 1}]
