"""POST /api/v1/usage/events."""

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from billing_kernel.auth.rules import Scope
from billing_kernel.db.database import Database
from tests.conftest import new_id, row_counts
from tests.web import Api, app_for

pytestmark = pytest.mark.anyio
EVENTS = "/api/v1/usage/events"


def event(org_id: str, key: str, quantity: Any = 10, **fields: Any) -> dict[str, Any]:
    return {
        "org_id": org_id,
        "metric": "tokens",
        "quantity": quantity,
        "idempotency_key": key,
        **fields,
    }


async def tokens_used(api: Api, org_id: str) -> int:
    return (await api.kernel.summary.period_usage(org_id)).used["tokens"]


async def test_a_batch_is_counted_and_answered_per_event(api: Api) -> None:
    org_a, org_b = new_id(), new_id()
    writer = await api.key(Scope.USAGE_WRITE)
    batch = [
        event(org_a, "1", 100),
        event(org_a, "2", 250),
        event(org_b, "1", 7),
        {**event(org_a, "run-1", 1), "metric": "playbook_runs"},
    ]
    response = await api.client.post(EVENTS, json={"events": batch}, headers=writer)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["accepted"], body["duplicates"], body["refused"]) == (4, 0, 0)
    assert [r["status"] for r in body["results"]] == ["accepted"] * 4
    assert [r["index"] for r in body["results"]] == [0, 1, 2, 3]
    assert await tokens_used(api, org_a) == 350
    assert await tokens_used(api, org_b) == 7

    again = await api.client.post(EVENTS, json={"events": batch}, headers=writer)
    assert (again.json()["accepted"], again.json()["duplicates"]) == (0, 4)
    assert await tokens_used(api, org_a) == 350


async def test_duplicates_inside_one_batch_count_once(api: Api) -> None:
    org_id = new_id()
    writer = await api.key(Scope.USAGE_WRITE)
    batch = [event(org_id, "same", 40), event(org_id, "same", 40), event(org_id, "same", 41)]
    body = (await api.client.post(EVENTS, json={"events": batch}, headers=writer)).json()
    assert [r["status"] for r in body["results"]] == ["accepted", "duplicate", "refused"]
    assert body["results"][2]["error"]["code"] == "idempotency_conflict"
    assert await tokens_used(api, org_id) == 40


async def test_an_observed_time_times_the_event_and_a_repeat_seen_later_is_a_duplicate(
    api: Api,
) -> None:
    """A sender that only knows when it saw the usage (an LLM response without a time)
    sends `observed_at`: the event is timed by it, and sending it again observed at another
    time, in the same batch or a later one, counts once; with `occurred_at` too it is
    refused alone, naming the field."""
    org_id = new_id()
    writer = await api.key(Scope.USAGE_WRITE)
    now = datetime.now(UTC).replace(microsecond=0)
    seen = [(now - timedelta(minutes=m)).isoformat() for m in (3, 2, 1)]
    batch = [
        event(org_id, "llm:msg_1", 42, observed_at=seen[0]),
        event(org_id, "llm:msg_1", 42, observed_at=seen[1]),
        event(org_id, "both", 1, observed_at=seen[0], occurred_at=seen[0]),
    ]
    body = (await api.client.post(EVENTS, json={"events": batch}, headers=writer)).json()
    assert [r["status"] for r in body["results"]] == ["accepted", "duplicate", "refused"]
    assert body["results"][2]["error"]["code"] == "invalid_input"
    assert "`observed_at`" in body["results"][2]["error"]["detail"]
    again = [event(org_id, "llm:msg_1", 42, observed_at=seen[2])]
    body = (await api.client.post(EVENTS, json={"events": again}, headers=writer)).json()
    assert [r["status"] for r in body["results"]] == ["duplicate"]
    assert await tokens_used(api, org_id) == 42
    reader = await api.key(Scope.BILLING_ADMIN, org_id=org_id)
    stored = (await api.client.get(f"/api/v1/orgs/{org_id}/events", headers=reader)).json()
    assert [e["occurred_at"] for e in stored["data"]] == [seen[0].replace("+00:00", "Z")]


async def test_concurrent_batches_with_overlapping_keys_count_each_key_once(api: Api) -> None:
    org_id = new_id()
    writer = await api.key(Scope.USAGE_WRITE)
    # 8 batches of 100 events over 200 distinct keys: every key is sent 4 times at once.
    batches = [
        [event(org_id, f"k{(b * 50 + i) % 200}", 1 + (b * 50 + i) % 200) for i in range(100)]
        for b in range(8)
    ]
    responses = await asyncio.gather(
        *(api.client.post(EVENTS, json={"events": batch}, headers=writer) for batch in batches)
    )
    assert all(r.status_code == 200 for r in responses)
    accepted = sum(r.json()["accepted"] for r in responses)
    duplicates = sum(r.json()["duplicates"] for r in responses)
    assert (accepted, duplicates) == (200, 600)
    assert await tokens_used(api, org_id) == sum(range(1, 201))


async def test_one_bad_event_is_refused_and_the_rest_are_counted(api: Api) -> None:
    org_id = new_id()
    writer = await api.key(Scope.USAGE_WRITE)
    now = datetime.now(UTC)
    batch = [
        event(org_id, "ok-1", 5),
        event(org_id, "negative", -1),
        event(org_id, "huge", 2**63),
        event(org_id, "zero", 0),
        {**event(org_id, "metric"), "metric": "gpu_hours"},
        event(org_id, "future", occurred_at=(now + timedelta(hours=1)).isoformat()),
        event(org_id, "old", occurred_at=(now - timedelta(days=40)).isoformat()),
        event("x" * 65, "long-org"),
        event(org_id, "ok-2", 6),
        event(org_id, "integral-float", 2.0),  # JSON Schema counts 2.0 as an integer
    ]
    body = (await api.client.post(EVENTS, json={"events": batch}, headers=writer)).json()
    outcome = {
        r["idempotency_key"]: (r["status"], (r.get("error") or {}).get("code"))
        for r in body["results"]
    }
    assert outcome == {
        "ok-1": ("accepted", None),
        "negative": ("refused", "invalid_input"),
        "huge": ("refused", "invalid_input"),
        "zero": ("accepted", None),
        "metric": ("refused", "unknown_metric"),
        "future": ("refused", "invalid_input"),
        "old": ("refused", "invalid_input"),
        "long-org": ("refused", "invalid_input"),
        "ok-2": ("accepted", None),
        "integral-float": ("accepted", None),
    }
    refused = {
        r["idempotency_key"]: r["error"]["detail"]
        for r in body["results"]
        if r["status"] == "refused"
    }
    assert "negative" in refused["negative"]
    assert "maximum" in refused["huge"]
    assert "in the future" in refused["future"]
    assert "older than 35 days" in refused["old"]
    assert await tokens_used(api, org_id) == 13


@pytest.mark.parametrize(
    ("batch", "location"),
    [
        ([event("o", "k", 1.5)], "body.events.0.quantity"),
        ([event("o", "k", "10")], "body.events.0.quantity"),
        ([event("o", "k", [1])], "body.events.0.quantity"),
        ([{"org_id": "o", "metric": "tokens", "quantity": 1}], "body.events.0.idempotency_key"),
        ([event("o", "k", occurred_at="2026-11-01T00:00:00")], "body.events.0.occurred_at"),
        ([event("o", "k", extra="field")], "body.events.0.extra"),
        ([], "body.events"),
        ([event("o", f"k{i}") for i in range(1001)], "body.events"),
    ],
)
async def test_a_malformed_batch_is_refused_whole_and_writes_nothing(
    api: Api, database: Database, batch: list[dict[str, Any]], location: str
) -> None:
    writer = await api.key(Scope.USAGE_WRITE)
    good = [event(new_id(), "fine", 3)]  # refused along with the bad one
    before = await row_counts(database)
    events = good + batch if batch else []
    response = await api.client.post(EVENTS, json={"events": events}, headers=writer)
    assert response.status_code == 422
    problem = response.json()
    assert problem["code"] == "invalid_request"
    locations = {e["location"].replace("events.1.", "events.0.") for e in problem["errors"]}
    assert location in locations
    assert await row_counts(database) == before


async def test_not_json_is_a_clear_422(api: Api) -> None:
    writer = await api.key(Scope.USAGE_WRITE)
    response = await api.client.post(
        EVENTS, content=b"{not json", headers={**writer, "Content-Type": "application/json"}
    )
    assert (response.status_code, response.json()["code"]) == (422, "invalid_request")
    assert "JSON" in response.json()["detail"]


async def test_1000_events_are_one_batch(api: Api) -> None:
    org_id = new_id()
    writer = await api.key(Scope.USAGE_WRITE)
    batch = [event(org_id, f"k{i}", i) for i in range(1000)]
    body = (await api.client.post(EVENTS, json={"events": batch}, headers=writer)).json()
    assert body["accepted"] == 1000
    assert await tokens_used(api, org_id) == sum(range(1000))


async def test_with_auto_create_off_unknown_orgs_are_refused(api: Api, database: Database) -> None:
    known = new_id()
    await api.kernel.orgs.create(known)
    writer = await api.key(Scope.USAGE_WRITE)
    unknown = new_id()
    async with app_for(database, auto_create_orgs=False) as client:
        body = (
            await client.post(
                EVENTS,
                headers=writer,
                json={
                    "events": [
                        event(known, "a", 1),
                        event(unknown, "b", 1),
                    ]
                },
            )
        ).json()
    assert [r["status"] for r in body["results"]] == ["accepted", "refused"]
    assert body["results"][1]["error"]["code"] == "org_not_found"
    assert await tokens_used(api, known) == 1
    with pytest.raises(Exception, match="no org"):
        await api.kernel.subscriptions.billing_state(unknown)


async def test_the_first_event_of_a_new_org_creates_it(api: Api) -> None:
    org_id = new_id()
    writer = await api.key(Scope.USAGE_WRITE)
    await api.client.post(EVENTS, json={"events": [event(org_id, "a", 12)]}, headers=writer)
    state = await api.kernel.subscriptions.billing_state(org_id)
    assert (state.plan_slug, state.status.value) == ("internal-dev", "trial")


POISON = [
    ("org_id", "a\ud800b"),
    ("org_id", "\udc00"),
    ("idempotency_key", "a\udc00"),
    ("occurred_at", "0001-01-01T00:00:00+01:00"),
    ("occurred_at", "9999-12-31T23:59:59-01:00"),
]
"""Valid JSON of the right types that no database can store or no calendar can hold."""


async def test_poison_values_are_refused_per_event_and_the_good_events_counted(api: Api) -> None:
    org_id = new_id()
    writer = await api.key(Scope.USAGE_WRITE)
    sent = [
        {**event(org_id, f"poison-{i}", 5), field: value} for i, (field, value) in enumerate(POISON)
    ]
    sent.insert(2, event(org_id, "good-1", 100))
    sent.append(event(org_id, "good-2", 20))
    await api.client.post(EVENTS, json={"events": [event(org_id, "seed", 0)]}, headers=writer)
    before = await row_counts(api.database)
    # JSON escapes, as a client writes them: "\ud800" is valid JSON, but not Unicode text.
    body = json.dumps({"events": sent}).encode()
    response = await api.client.post(
        EVENTS, content=body, headers={**writer, "Content-Type": "application/json"}
    )
    assert response.status_code == 200, response.text
    answer = json.loads(response.content)
    assert (answer["accepted"], answer["refused"]) == (2, len(POISON))
    for result, original in zip(answer["results"], sent, strict=True):
        # Each result echoes the event exactly as sent, lone surrogates included.
        assert (result["org_id"], result["idempotency_key"]) == (
            original["org_id"],
            original["idempotency_key"],
        )
        good = original["idempotency_key"].startswith("good")
        assert result["status"] == ("accepted" if good else "refused")
        if not good:
            assert result["error"]["code"] == "invalid_input"
    assert await tokens_used(api, org_id) == 120
    after = await row_counts(api.database)
    assert after["usage_events"] == before["usage_events"] + 2
    assert after["orgs"] == before["orgs"]


async def test_a_lone_surrogate_in_a_json_key_is_a_422_not_a_crash(api: Api) -> None:
    writer = await api.key(Scope.USAGE_WRITE)
    body = b'{"events": [], "\\udc00": 1}'
    response = await api.client.post(
        EVENTS, content=body, headers={**writer, "Content-Type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["code"] == "invalid_request"
