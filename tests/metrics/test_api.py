"""Metrics as meters over HTTP: defining one, sending named events it counts, and reading
them back. On a database of this module's own: the catalogue is every org's."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from billing_kernel.auth.rules import Scope
from billing_kernel.common.periods import BillingPeriod
from billing_kernel.config import Settings
from billing_kernel.db.database import Database
from billing_kernel.kernel import Kernel
from billing_kernel.metrics.rules import Metric
from tests.conftest import new_id
from tests.web import Api, app_for

pytestmark = pytest.mark.anyio
METRICS = "/api/v1/billing/metrics"
EVENTS = "/api/v1/usage/events"
TOKENS = {
    "name": "LLM tokens",
    "unit": "tokens",
    "aggregation": "sum",
    "events": ["llm.completion"],
    "value_property": "total_tokens",
}


@pytest.fixture
async def api(module_database_url: str) -> AsyncIterator[Api]:
    database = Database(module_database_url)
    async with app_for(database) as client:
        yield Api(client, Kernel(database, Settings(database_url=module_database_url)), database)
    await database.dispose()


async def define(api: Api, key: str, **body: Any) -> Any:
    admin = await api.key(Scope.BILLING_ADMIN)
    return await api.client.put(f"{METRICS}/{key}", json=body, headers=admin)


async def tokens_and_calls(api: Api) -> tuple[str, str, str]:
    """Two new metrics that count a new event name: the sum of its `total_tokens`, and how
    many; their keys and the name."""
    tokens, calls = new_id("t").replace("-", "_"), new_id("c").replace("-", "_")
    event = new_id("llm.completion")
    assert (await define(api, tokens, **TOKENS | {"events": [event]})).status_code == 201
    counted = {"name": "Calls", "unit": "calls", "aggregation": "count", "events": [event]}
    assert (await define(api, calls, **counted)).status_code == 201
    return tokens, calls, event


async def stored_catalogue(api: Api) -> list[Metric]:
    """The catalogue as stored now (a new kernel: nothing cached)."""
    return await Kernel(
        api.database, Settings(database_url=str(api.database.url))
    ).metrics.catalogue()


async def checked_but_never_consumed_or_reserved(
    api: Api, writer: dict[str, str], org_id: str, metric: str
) -> None:
    """A metric that is not a sum of quantities: a check answers (refused: the org's plan,
    made before the metric, does not name it, so gives none of it), a consume and a
    reservation are 422."""
    headers = writer | {"X-Org-Id": org_id}
    check = "/api/v1/billing/org/check"
    checked = await api.client.post(check, json={"metric": metric, "amount": 1}, headers=headers)
    answer = checked.json()
    assert (checked.status_code, answer["allowed"], answer["limit"]) == (200, False, 0)
    assert answer["message"].startswith("Internal (dev) does not include")
    consume = {"metric": metric, "amount": 1, "consume": True, "idempotency_key": "c-1"}
    refused = await api.client.post(check, json=consume, headers=headers)
    assert (refused.status_code, refused.json()["code"]) == (422, "invalid_input")
    reserve = {
        "org_id": org_id,
        "metric": metric,
        "estimate": 1,
        "idempotency_key": "r-1",
        "ttl_seconds": 60,
    }
    held = await api.client.post("/api/v1/usage/reservations", json=reserve, headers=writer)
    assert (held.status_code, held.json()["code"]) == (422, "invalid_input")


def named(org_id: str, key: str, event: str = "llm.completion", **properties: Any) -> Any:
    return {"org_id": org_id, "idempotency_key": key, "event": event, "properties": properties}


async def test_a_metric_is_defined_then_changed_and_listed(api: Api) -> None:
    key, event = new_id("m").replace("-", "_"), new_id("llm.completion")
    created = await define(api, key, **TOKENS | {"events": [event]})
    assert created.status_code == 201, created.text
    last_month = BillingPeriod.containing(datetime.now(UTC)).previous().label
    assert created.json() == {
        "key": key,
        "name": "LLM tokens",
        "unit": "tokens",
        "aggregation": "sum",
        "events": [event],
        "value_property": "total_tokens",
        "filters": {},
        "required": False,
        "recordable": True,
        "not_counted_this_month": None,  # a list shows it, to a deployment admin
        "last_month": {
            "period": last_month,
            "events": 0,
            "counted": 0,
            "not_counted": 0,
            "complete": True,
        },
    }
    changed = await define(
        api, key, **TOKENS | {"events": [event], "filters": {"model": "gpt-5", "cached": False}}
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["filters"] == {"cached": False, "model": "gpt-5"}
    reader = await api.key(Scope.QUOTA_CHECK)
    listed = (await api.client.get(METRICS, headers=reader)).json()["metrics"]
    assert [m["key"] for m in listed][:3] == ["tokens", "playbook_runs", "seats"]
    defined = changed.json()
    del defined["last_month"]
    assert [m for m in listed if m["key"] == key] == [defined]
    seats = next(m for m in listed if m["key"] == "seats")
    assert (seats["aggregation"], seats["events"], seats["recordable"]) == ("seats", [], False)
    tokens = next(m for m in listed if m["key"] == "tokens")
    assert (tokens["events"], tokens["value_property"]) == (["tokens"], None)


async def test_a_meter_skips_what_it_cannot_read_says_so_and_is_tried_on_last_month(
    api: Api,
) -> None:
    tokens, calls, event = await tokens_and_calls(api)
    org_id = new_id()
    writer = await api.key(Scope.USAGE_WRITE)
    this_month = BillingPeriod.containing(datetime.now(UTC))
    last_hour = (this_month.start - timedelta(hours=1)).isoformat()  # of last month

    def last_month(key: str, **properties: Any) -> Any:
        return named(org_id, key, event, **properties) | {"occurred_at": last_hour}

    batch = [
        last_month("p1", total_tokens=5, model="gpt-5"),
        last_month("p2", model="gpt-5"),  # no amount: the tokens skip it
        last_month("p3", total_tokens="x", model="claude"),  # not a number: skipped
        named(org_id, "n1", event, model="gpt-5"),  # this month, skipped
        named(org_id, "n1", event, model="gpt-5"),  # a repeat: skipped once
    ]
    answer = (await api.client.post(EVENTS, json={"events": batch}, headers=writer)).json()
    assert [(r["status"], r["not_counted_by"]) for r in answer["results"]] == [
        ("accepted", []),
        ("accepted", [tokens]),
        ("accepted", [tokens]),
        ("accepted", [tokens]),
        ("duplicate", [tokens]),
    ]
    admin = await api.key(Scope.BILLING_ADMIN)
    listed = (await api.client.get(METRICS, headers=admin)).json()["metrics"]
    figures = {m["key"]: m["not_counted_this_month"] for m in listed}
    assert (figures[tokens], figures[calls]) == (1, 0)
    for scopes, org in (((Scope.QUOTA_CHECK,), None), ((Scope.BILLING_ADMIN,), org_id)):
        other = await api.key(*scopes, org_id=org)  # every org's figure: not theirs to see
        listed = (await api.client.get(METRICS, headers=other)).json()["metrics"]
        assert {m["not_counted_this_month"] for m in listed} == {None}

    # A meter of the same event for gpt-5 only, tried on last month's events before use:
    gpt = new_id("g").replace("-", "_")
    body = TOKENS | {"events": [event], "filters": {"model": "gpt-5"}}
    defined = await define(api, gpt, **body)
    assert defined.status_code == 201, defined.text
    assert defined.json()["last_month"] == {
        "period": this_month.previous().label,
        "events": 3,
        "counted": 1,
        "not_counted": 1,  # p2; p3 is left out by the filter
        "complete": True,
    }
    required = await define(api, gpt, **body | {"required": True})
    assert (required.status_code, required.json()["required"]) == (200, True)
    assert required.json()["last_month"]["not_counted"] == 1  # it would have refused p2


@pytest.mark.parametrize(
    ("key", "body", "field"),
    [
        ("seats", {"name": "Seats", "unit": "seats", "aggregation": "sum"}, "key"),
        ("tokens", {"name": "Tokens", "unit": "tokens", "aggregation": "count"}, "aggregation"),
        ("calls", {"name": "C", "unit": "c", "aggregation": "count", "value_property": "n"}, None),
    ],
)
async def test_a_definition_the_rules_refuse_is_a_422_that_writes_nothing(
    api: Api, key: str, body: dict[str, Any], field: str | None
) -> None:
    before = await stored_catalogue(api)
    refused = await define(api, key, **body)
    assert refused.status_code == 422, refused.text
    assert refused.json()["code"] == "invalid_input"
    if field is not None:
        assert refused.json()["errors"][0]["location"] == field
    assert await stored_catalogue(api) == before


async def test_an_event_name_the_schema_states_is_checked_as_the_body_is_parsed(api: Api) -> None:
    before = await stored_catalogue(api)
    body = {"name": "C", "unit": "c", "aggregation": "sum", "events": ["llm.call", "a\tb"]}
    refused = await define(api, "calls", **body)
    assert (refused.status_code, refused.json()["code"]) == (422, "invalid_request")
    assert refused.json()["errors"][0]["location"] == "body.events.1"
    assert await stored_catalogue(api) == before


async def test_any_name_the_incumbents_take_is_counted_and_read_back_as_sent(api: Api) -> None:
    """Event names are any text of up to 255 characters without control characters, as
    Lago, OpenMeter, Stripe and Polar take them: a meter counts `llm call`, `トークン` and
    a name of 255 characters, and the events read back with their names as sent."""
    names = [f"llm call {new_id()}", f"トークン {new_id()}", f"{new_id()} " + "x" * 200]
    names[2] = names[2][:255].ljust(255, "y")
    key = new_id("m").replace("-", "_")
    body = {"name": "Calls", "unit": "calls", "aggregation": "count", "events": names}
    assert (await define(api, key, **body)).status_code == 201
    org_id = new_id()
    writer = await api.key(Scope.USAGE_WRITE)
    sent = [
        {"org_id": org_id, "event": name, "idempotency_key": f"k{n}", "properties": {}}
        for n, name in enumerate(names)
    ]
    answer = await api.client.post(EVENTS, json={"events": sent}, headers=writer)
    assert answer.status_code == 200, answer.text
    assert answer.json()["accepted"] == 3
    admin = await api.key(Scope.BILLING_ADMIN)
    read = await api.client.get(f"/api/v1/orgs/{org_id}/events", headers=admin)
    assert read.status_code == 200, read.text
    assert sorted(e["event"] for e in read.json()["data"]) == sorted(names)
    too_long = {**sent[0], "event": "z" * 256, "idempotency_key": "k9"}
    refused = await api.client.post(EVENTS, json={"events": [too_long]}, headers=writer)
    error = refused.json()["results"][0]["error"]
    assert error["code"] == "invalid_input", error
    assert "event is longer than 255 characters" in str(error), error


@pytest.mark.parametrize(
    "body",
    [
        {"name": "C", "unit": "c", "aggregation": "avg"},
        {"name": "C", "unit": "c", "aggregation": "sum", "filters": {"x": 1.5}},
        {"name": "C", "unit": "c"},
        {"name": "C", "unit": "c", "aggregation": "sum", "extra": 1},
    ],
)
async def test_a_body_of_the_wrong_shape_is_a_422(api: Api, body: dict[str, Any]) -> None:
    assert (await define(api, "calls", **body)).status_code == 422


async def test_only_a_deployment_admin_defines_metrics(api: Api) -> None:
    for scopes, org in (((Scope.QUOTA_CHECK,), None), ((Scope.BILLING_ADMIN,), new_id())):
        headers = await api.key(*scopes, org_id=org)
        answer = await api.client.put(f"{METRICS}/calls", json=TOKENS, headers=headers)
        assert answer.status_code == 403, answer.text


async def test_named_events_count_toward_each_metric_and_read_back_per_line(api: Api) -> None:
    tokens, calls, event = await tokens_and_calls(api)
    org_id = new_id()
    writer = await api.key(Scope.USAGE_WRITE)
    batch = [
        named(org_id, "a", event, total_tokens=1200, model="gpt-5"),
        named(org_id, "b", event, total_tokens=800),
        named(org_id, "a", event, total_tokens=1200, model="gpt-5"),  # a repeat
        named(org_id, "c", event, model="gpt-5"),  # no amount: the calls count it
        named(org_id, "d", "llm.unknown", total_tokens=5),
        named(org_id, "e", event, total_tokens=5) | {"metric": "tokens"},
        {"org_id": org_id, "idempotency_key": "f"},
    ]
    body = (await api.client.post(EVENTS, json={"events": batch}, headers=writer)).json()
    assert [(r["status"], r["not_counted_by"]) for r in body["results"]] == [
        ("accepted", []),
        ("accepted", []),
        ("duplicate", []),
        ("accepted", [tokens]),
        ("refused", []),
        ("refused", []),
        ("refused", []),
    ]
    errors = [r["error"] and r["error"]["code"] for r in body["results"]]
    assert errors[4:] == ["unknown_event", "invalid_input", "invalid_input"]
    usage = await api.kernel.summary.period_usage(org_id)
    assert (usage.used[tokens], usage.used[calls]) == (2000, 3)

    admin = await api.key(Scope.BILLING_ADMIN)
    seen, cursor = [], None
    while True:  # one line a page: the cursor walks the lines of one event too
        params = {"limit": 1, "event": event} | ({"cursor": cursor} if cursor else {})
        page = (
            await api.client.get(f"/api/v1/orgs/{org_id}/events", params=params, headers=admin)
        ).json()
        seen += [
            (e["idempotency_key"], e["metric"], e["quantity"], e["event"]) for e in page["data"]
        ]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(
        [
            ("a", tokens, 1200, event),
            ("a", calls, 1, event),
            ("b", tokens, 800, event),
            ("b", calls, 1, event),
            ("c", calls, 1, event),
        ]
    )
    exported = await api.client.get(
        f"/api/v1/orgs/{org_id}/events.csv", params={"metric": calls}, headers=admin
    )
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert [(r["idempotency_key"], r["quantity"], r["event"]) for r in rows] == [
        ("a", "1", event),
        ("b", "1", event),
        ("c", "1", event),
    ]
    other = await api.client.get(
        f"/api/v1/orgs/{org_id}/events", params={"event": "llm.other"}, headers=admin
    )
    assert other.json()["data"] == []


async def test_an_event_its_filters_leave_out_is_accepted_and_counts_nothing(api: Api) -> None:
    gpt = new_id("g").replace("-", "_")
    event = new_id("chat")
    body = TOKENS | {"events": [event], "filters": {"model": "gpt-5"}}
    assert (await define(api, gpt, **body)).status_code == 201
    org_id = new_id()
    writer = await api.key(Scope.USAGE_WRITE)
    batch = [
        named(org_id, "x", event, model="claude"),  # no amount, and none needed
        named(org_id, "y", event, model="gpt-5", total_tokens=10),
    ]
    answer = (await api.client.post(EVENTS, json={"events": batch}, headers=writer)).json()
    assert answer["accepted"] == 2, answer
    assert (await api.kernel.summary.period_usage(org_id)).used[gpt] == 10
    again = named(org_id, "x", event, model="gpt-5", total_tokens=3)  # the key, reused
    reused = (await api.client.post(EVENTS, json={"events": [again]}, headers=writer)).json()
    assert reused["results"][0]["error"]["code"] == "idempotency_conflict"


async def test_the_protocols_send_named_events_that_metrics_map(api: Api) -> None:
    """OpenMeter's event type `llm.completion` (not a metric key) counts toward the metrics
    that count it, each reading its amount as defined; errors name OpenMeter's `data`."""
    tokens, calls, event = await tokens_and_calls(api)
    org_id = new_id()
    writer = await api.key(Scope.USAGE_WRITE) | {"Content-Type": "application/cloudevents+json"}

    def cloud_event(key: str, data: dict[str, Any]) -> dict[str, Any]:
        return {
            "specversion": "1.0",
            "id": key,
            "source": "app",
            "type": event,
            "subject": org_id,
            "data": data,
        }

    path = "/compat/openmeter/api/v1/events"
    sent = await api.client.post(
        path, json=cloud_event("e1", {"total_tokens": 700, "model": "gpt-5"}), headers=writer
    )
    assert sent.status_code == 204, sent.text
    usage = await api.kernel.summary.period_usage(org_id)
    assert (usage.used[tokens], usage.used[calls]) == (700, 1)
    skipped = await api.client.post(
        path, json=cloud_event("e2", {"total_tokens": "lots"}), headers=writer
    )
    assert skipped.status_code == 204  # the tokens cannot read it; the calls count it
    usage = await api.kernel.summary.period_usage(org_id)
    assert (usage.used[tokens], usage.used[calls]) == (700, 2)
    required = TOKENS | {"events": [event], "required": True}
    assert (await define(api, tokens, **required)).status_code == 200
    refused = await api.client.post(
        path, json=cloud_event("e3", {"total_tokens": "lots"}), headers=writer
    )
    assert refused.status_code == 400
    assert "data.total_tokens must be a whole number" in refused.text
    usage = await api.kernel.summary.period_usage(org_id)
    assert (usage.used[tokens], usage.used[calls]) == (700, 2)


async def test_a_unique_count_counts_distinct_values_and_is_checked_never_consumed(
    api: Api,
) -> None:
    users, event = new_id("u").replace("-", "_"), new_id("llm.completion")
    body = {
        "name": "Users",
        "unit": "users",
        "aggregation": "unique_count",
        "events": [event],
        "value_property": "user",
    }
    defined = await define(api, users, **body)
    assert defined.status_code == 201, defined.text
    assert defined.json()["recordable"] is False
    org_id = new_id()
    writer = await api.key(Scope.USAGE_WRITE, Scope.QUOTA_CHECK)
    batch = [
        named(org_id, "a", event, user="u1"),
        named(org_id, "b", event, user="u2"),
        named(org_id, "c", event, user="u1"),  # seen this month: counts 0
        named(org_id, "a", event, user="u1"),  # a repeat of a key
        named(org_id, "d", event, user=1),  # 1 is not "1", nor "u1"
        named(org_id, "e", event, model="gpt-5"),  # no user: skipped
        {"org_id": org_id, "idempotency_key": "f", "metric": users, "quantity": 1},
    ]
    answer = (await api.client.post(EVENTS, json={"events": batch}, headers=writer)).json()
    assert [r["status"] for r in answer["results"]] == [
        "accepted",
        "accepted",
        "accepted",
        "duplicate",
        "accepted",
        "accepted",
        "refused",
    ]
    assert answer["results"][5]["not_counted_by"] == [users]
    assert "cannot be recorded, consumed or reserved" in answer["results"][6]["error"]["detail"]
    assert (await api.kernel.summary.period_usage(org_id)).used[users] == 3
    admin = await api.key(Scope.BILLING_ADMIN)
    lines = await api.client.get(
        f"/api/v1/orgs/{org_id}/events", params={"metric": users}, headers=admin
    )
    assert [(e["idempotency_key"], e["quantity"]) for e in lines.json()["data"]] == [
        ("a", 1),
        ("b", 1),
        ("c", 0),
        ("d", 1),
    ]  # a batch's events go in in key order: "a" is the first with "u1"

    await checked_but_never_consumed_or_reserved(api, writer, org_id, users)
    assert (await api.kernel.summary.period_usage(org_id)).used[users] == 3


async def test_a_plan_includes_and_prices_a_metric_defined_by_data(api: Api) -> None:
    _, calls, event = await tokens_and_calls(api)
    admin = await api.key(Scope.BILLING_ADMIN)
    slug = new_id("plan")
    plan = {
        "slug": slug,
        "name": "Metered",
        "currency": "USD",
        "monthly_price": "10.00",
        "metrics": [
            {
                "metric": calls,
                "included_quantity": 2,
                "overage_unit_price": "0.25",
                "overage_unit_size": 1,
            }
        ],
    }
    created = await api.client.post("/api/v1/billing/plans", json=plan, headers=admin)
    assert created.status_code == 201, created.text
    org_id = new_id()
    org = await api.client.put(
        f"/api/v1/orgs/{org_id}", json={"plan_slug": slug, "status": "active"}, headers=admin
    )
    assert org.status_code in (200, 201), org.text
    writer = await api.key(Scope.USAGE_WRITE)
    batch = [named(org_id, f"k{n}", event, total_tokens=10) for n in range(5)]
    await api.client.post(EVENTS, json={"events": batch}, headers=writer)
    summary = await api.kernel.summary.summary(org_id)
    line = summary.metric(calls)
    assert (line.used, line.limit) == (5, 2)
    upcoming = await api.client.get(
        "/api/v1/billing/org/invoices/upcoming", headers=admin | {"X-Org-Id": org_id}
    )
    overage = [x for x in upcoming.json()["lines"] if x.get("metric") == calls]
    assert [x["amount"] for x in overage] == ["0.75"]  # 3 calls over, at 0.25


async def test_a_max_is_the_highest_amount_checked_but_never_consumed_or_reserved(
    api: Api,
) -> None:
    peak, event = new_id("p").replace("-", "_"), new_id("workers.sampled")
    body = {"name": "Peak workers", "unit": "workers", "aggregation": "max", "events": [event]}
    defined = await define(api, peak, **body)
    assert defined.status_code == 201, defined.text
    assert (defined.json()["aggregation"], defined.json()["recordable"]) == ("max", False)
    org_id = new_id()
    writer = await api.key(Scope.USAGE_WRITE, Scope.QUOTA_CHECK)
    batch = [
        named(org_id, "a", event, value=4, region="eu"),
        named(org_id, "b", event, value=9, region="us"),
        named(org_id, "c", event, value=6, region="eu"),
        named(org_id, "b", event, value=9, region="us"),  # a repeat of a key
        named(org_id, "d", event, workers=12),  # no `value`: the max skips it
        {"org_id": org_id, "idempotency_key": "e", "metric": peak, "quantity": 1},
    ]
    answer = (await api.client.post(EVENTS, json={"events": batch}, headers=writer)).json()
    assert [(r["status"], r["not_counted_by"]) for r in answer["results"]] == [
        ("accepted", []),
        ("accepted", []),
        ("accepted", []),
        ("duplicate", []),
        ("accepted", [peak]),
        ("refused", []),
    ]
    assert "is a max of named events" in answer["results"][5]["error"]["detail"]
    assert (await api.kernel.summary.period_usage(org_id)).used[peak] == 9
    more = [named(org_id, "f", event, value=7, region="eu")]  # lower: stays at 9
    await api.client.post(EVENTS, json={"events": more}, headers=writer)
    assert (await api.kernel.summary.period_usage(org_id)).used[peak] == 9

    admin = await api.key(Scope.BILLING_ADMIN)
    url = f"/api/v1/orgs/{org_id}/usage"
    grouped = await api.client.get(url, params={"group_by": "region"}, headers=admin)
    [point] = grouped.json()["data"]
    assert point["usage"][peak] == 9
    assert point["groups"][peak] == [
        {"value": "us", "quantity": 9},
        {"value": "eu", "quantity": 7},  # each group's highest
    ]
    daily = await api.client.get(url, params={"granularity": "day"}, headers=admin)
    assert max(p["usage"][peak] for p in daily.json()["data"]) == 9  # the day's highest

    await checked_but_never_consumed_or_reserved(api, writer, org_id, peak)


async def test_a_latest_is_the_last_amount_by_event_time_grouped_and_checked(api: Api) -> None:
    gauge, event = new_id("g").replace("-", "_"), new_id("storage.sampled")
    body = {
        "name": "Storage",
        "unit": "GB",
        "aggregation": "latest",
        "events": [event],
        "value_property": "gb",
    }
    defined = await define(api, gauge, **body)
    assert defined.status_code == 201, defined.text
    assert (defined.json()["aggregation"], defined.json()["recordable"]) == ("latest", False)
    org_id = new_id()
    writer = await api.key(Scope.USAGE_WRITE, Scope.QUOTA_CHECK)
    now = datetime.now(UTC).replace(microsecond=0)
    earlier = max(BillingPeriod.containing(now).start, now - timedelta(hours=1))

    def sample(key: str, gb: int, at: datetime, bucket: str) -> Any:
        return named(org_id, key, event, gb=gb, bucket=bucket) | {"occurred_at": at.isoformat()}

    batch = [
        sample("b", 40, now, "logs"),
        sample("a", 70, now, "media"),  # the same time: "b" stands after it
        sample("0", 90, earlier, "media"),  # earlier (or, at 00:00 on the 1st, before "a")
        sample("d", 5, now, "logs") | {"properties": {"size": 5}},  # no `gb`: skipped
    ]
    answer = (await api.client.post(EVENTS, json={"events": batch}, headers=writer)).json()
    assert [r["status"] for r in answer["results"]] == ["accepted"] * 4
    assert answer["results"][3]["not_counted_by"] == [gauge]
    body["required"] = True  # from now on, refused
    assert (await define(api, gauge, **body)).status_code == 200
    required = [sample("d2", 5, now, "logs") | {"properties": {"size": 5}}]
    answer = (await api.client.post(EVENTS, json={"events": required}, headers=writer)).json()
    [result] = answer["results"]
    assert (result["status"], result["not_counted_by"]) == ("refused", [])
    assert result["error"]["detail"] == (
        f"metric {gauge!r} reads property `gb`, which the event does not have (required)"
    )
    assert (await api.kernel.summary.period_usage(org_id)).used[gauge] == 40
    older = [sample("e", 1, earlier, "logs")]  # dated before the last: changes nothing
    await api.client.post(EVENTS, json={"events": older}, headers=writer)
    assert (await api.kernel.summary.period_usage(org_id)).used[gauge] == 40

    admin = await api.key(Scope.BILLING_ADMIN)
    url = f"/api/v1/orgs/{org_id}/usage"
    grouped = await api.client.get(url, params={"group_by": "bucket"}, headers=admin)
    [point] = grouped.json()["data"]
    assert point["usage"][gauge] == 40
    assert point["groups"][gauge] == [
        {"value": "media", "quantity": 70},  # each group's last
        {"value": "logs", "quantity": 40},
    ]
    await checked_but_never_consumed_or_reserved(api, writer, org_id, gauge)
