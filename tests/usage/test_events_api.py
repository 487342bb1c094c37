"""An org's usage events read back over HTTP: in time order, a page at a time, filtered, and
as a streamed CSV; refusals name what is wrong."""

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest

from billing_kernel.auth.rules import Scope
from billing_kernel.kernel import Kernel
from billing_kernel.usage.rules import RecordStatus, UsageReport
from tests.conftest import Clock, new_id
from tests.web import Api

pytestmark = pytest.mark.anyio

START = datetime(2026, 10, 31, 22, tzinfo=UTC)


async def org_with_events(api: Api) -> str:
    """Seven events an hour apart across a month's end, tokens and runs by turns."""
    org_id = new_id()
    clock = Clock(START + timedelta(days=2))
    kernel = Kernel(api.database, api.kernel.settings, clock=clock)  # type: ignore[arg-type]
    await kernel.orgs.create(org_id, plan_slug="starter")
    for n in range(7):
        await kernel.usage.record(
            org_id,
            "tokens" if n % 2 == 0 else "playbook_runs",
            100 + n,
            idempotency_key=f"call,{n}",  # a comma: the CSV quotes it
            occurred_at=START + timedelta(hours=n),
            properties={"model": "gpt-5", "cached": n == 4} if n % 4 == 0 else None,
        )
    return org_id


async def test_events_come_back_in_the_order_they_occurred_a_page_at_a_time(api: Api) -> None:
    org_id = await org_with_events(api)
    admin = await api.key(Scope.BILLING_ADMIN, org_id=org_id)
    url = f"/api/v1/orgs/{org_id}/events"
    seen: list[dict[str, object]] = []
    cursor = None
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = (await api.client.get(url, params=params, headers=admin)).json()
        seen += page["data"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [e["idempotency_key"] for e in seen] == [f"call,{n}" for n in range(7)]
    assert [e["period"] for e in seen] == ["2026-10"] * 2 + ["2026-11"] * 5
    assert seen[0] == {
        "idempotency_key": "call,0",
        "metric": "tokens",
        "quantity": 100,
        "occurred_at": "2026-10-31T22:00:00Z",
        "received_at": "2026-11-02T22:00:00Z",
        "period": "2026-10",
        "invoice_id": None,
        "properties": {"cached": False, "model": "gpt-5"},
        "event": None,
        "changed_repeats": 0,
        "last_changed_repeat_at": None,
    }
    assert [e["properties"] for e in seen[1:5]] == [
        None,
        None,
        None,
        {"cached": True, "model": "gpt-5"},
    ]
    runs = (await api.client.get(url, params={"metric": "playbook_runs"}, headers=admin)).json()
    assert [e["quantity"] for e in runs["data"]] == [101, 103, 105]
    november = {"from": "2026-11-01T00:00:00Z", "to": "2026-11-01T02:00:00Z"}
    window = (await api.client.get(url, params=november, headers=admin)).json()
    assert [e["idempotency_key"] for e in window["data"]] == ["call,2", "call,3"]


async def test_events_no_metric_counts_are_read_back_as_counted_toward_nothing(api: Api) -> None:
    """The incumbents' protocols keep an event of a name no metric counts: it is listed in
    its place, once, with no metric and no quantity; a metric asked for leaves it out."""
    org_id = await org_with_events(api)
    clock = Clock(START + timedelta(days=2))
    kernel = Kernel(api.database, api.kernel.settings, clock=clock)  # type: ignore[arg-type]
    kept = [
        UsageReport(org_id, None, None, key, START + timedelta(hours=hour), {"v": 1}, "nobody")
        for key, hour in (("kept-a", 0), ("kept-b", 3.5), ("kept-c", 6))
    ]
    result = await kernel.usage.record_batch(kept, keep_uncounted=True)
    assert [o.status for o in result.outcomes] == [RecordStatus.ACCEPTED] * 3
    admin = await api.key(Scope.BILLING_ADMIN, org_id=org_id)
    url = f"/api/v1/orgs/{org_id}/events"
    seen: list[dict[str, object]] = []
    cursor = None
    while True:  # two at a time: the pages cut between the two kinds of line
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        answer = await api.client.get(url, params=params, headers=admin)
        assert answer.status_code == 200, answer.text
        seen += answer.json()["data"]
        cursor = answer.json()["next_cursor"]
        if cursor is None:
            break
    assert [(e["idempotency_key"], e["metric"], e["quantity"]) for e in seen] == [
        ("call,0", "tokens", 100),
        ("kept-a", None, 0),
        ("call,1", "playbook_runs", 101),
        ("call,2", "tokens", 102),
        ("call,3", "playbook_runs", 103),
        ("kept-b", None, 0),
        ("call,4", "tokens", 104),
        ("call,5", "playbook_runs", 105),
        ("call,6", "tokens", 106),
        ("kept-c", None, 0),
    ]
    [b] = [e for e in seen if e["idempotency_key"] == "kept-b"]
    assert (b["event"], b["properties"], b["period"], b["invoice_id"]) == (
        "nobody",
        {"v": 1},
        "2026-11",
        None,
    )
    named = await api.client.get(url, params={"event": "nobody"}, headers=admin)
    assert [e["idempotency_key"] for e in named.json()["data"]] == ["kept-a", "kept-b", "kept-c"]
    tokens = await api.client.get(url, params={"metric": "tokens"}, headers=admin)
    assert all(e["metric"] == "tokens" for e in tokens.json()["data"])
    exported = await api.client.get(f"{url}.csv", headers=admin)
    rows = list(csv.reader(io.StringIO(exported.text)))
    assert [r[1] for r in rows[1:] if r[0].startswith("kept")] == ["", "", ""]


async def test_the_csv_export_streams_every_event_and_refusals_name_the_field(api: Api) -> None:
    org_id = await org_with_events(api)
    admin = await api.key(Scope.BILLING_ADMIN, org_id=org_id)
    answer = await api.client.get(
        f"/api/v1/orgs/{org_id}/events.csv", params={"metric": "tokens"}, headers=admin
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "text/csv; charset=utf-8"
    rows = list(csv.reader(io.StringIO(answer.text)))
    assert rows[0] == [
        "idempotency_key",
        "metric",
        "quantity",
        "occurred_at",
        "received_at",
        "invoice_id",
        "properties",
        "event",
    ]
    assert rows[1][6] == '{"cached":false,"model":"gpt-5"}'
    assert rows[2][6] == ""
    assert [(r[0], r[2]) for r in rows[1:]] == [
        ("call,0", "100"),
        ("call,2", "102"),
        ("call,4", "104"),
        ("call,6", "106"),
    ]
    assert answer.text.count("\r\n") == 5
    url = f"/api/v1/orgs/{org_id}/events"
    for params, field in (
        ({"metric": "nope"}, "unknown_metric"),
        ({"from": "2026-11-01T00:00:00"}, "from"),  # no time zone
        ({"to": "0.5"}, "to"),  # not a Unix time
        ({"cursor": "2026-11-01T00:00:00Z|x"}, "cursor"),
        ({"limit": 0}, "limit"),
    ):
        refused = await api.client.get(url, params=params, headers=admin)
        assert refused.status_code in (404, 422), (params, refused.text)
        assert field in refused.text, params
    other = await api.key(Scope.BILLING_ADMIN, org_id=new_id())
    assert (await api.client.get(url, headers=other)).status_code == 403
    unknown = await api.client.get(
        f"/api/v1/orgs/{new_id()}/events", headers=await api.key(Scope.BILLING_ADMIN)
    )
    assert unknown.status_code == 404


async def test_usage_per_month_or_day_exports_as_csv(api: Api) -> None:
    org_id = await org_with_events(api)
    admin = await api.key(Scope.BILLING_ADMIN, org_id=org_id)
    url = f"/api/v1/orgs/{org_id}/usage.csv"
    monthly = await api.client.get(url, params={"from": "2026-10", "to": "2026-11"}, headers=admin)
    assert monthly.status_code == 200, monthly.text
    rows = {(r[0], r[2]): r[3] for r in csv.reader(io.StringIO(monthly.text))}
    assert rows[("start", "metric")] == "quantity"
    assert (rows[("2026-10-01", "tokens")], rows[("2026-10-01", "playbook_runs")]) == ("100", "101")
    assert rows[("2026-11-01", "tokens")] == str(102 + 104 + 106)
    daily = await api.client.get(
        url, params={"from": "2026-10", "to": "2026-10", "granularity": "day"}, headers=admin
    )
    days = list(csv.reader(io.StringIO(daily.text)))[1:]
    assert len(days) == 31 * 2  # every day of October, each metric counted per day
    assert ["2026-10-31", "2026-11-01", "tokens", "100"] in days
    unknown = await api.client.get(
        f"/api/v1/orgs/{new_id()}/usage.csv", headers=await api.key(Scope.BILLING_ADMIN)
    )
    assert unknown.status_code == 404
