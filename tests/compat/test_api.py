"""The compatible protocols' edges in process: what the incumbents' clients never send
(bodies that are not JSON, keys for another org, Basic auth), and org aliases."""

from __future__ import annotations

import base64
import uuid

import pytest

from billing_kernel.auth.rules import Scope
from tests.conftest import new_id, row_counts
from tests.web import Api

pytestmark = pytest.mark.anyio


async def org_with(api: Api, *aliases: str) -> str:
    org_id = new_id()
    await api.kernel.orgs.create(org_id)
    if aliases:
        await api.kernel.orgs.set_aliases(org_id, aliases)
    return org_id


async def used(api: Api, org_id: str, metric: str = "tokens") -> int:
    return (await api.kernel.summary.period_usage(org_id)).used[metric]


async def test_aliases_are_replaced_listed_and_never_shared(api: Api) -> None:
    admin = await api.key(Scope.BILLING_ADMIN)
    a, b, c, taken_alias = (new_id(f"cus_{x}") for x in "abct")  # unique in the shared database
    org_id, other = await org_with(api), await org_with(api, taken_alias)
    path = f"/api/v1/orgs/{org_id}/aliases"
    put = await api.client.put(path, json={"aliases": [b, a, b]}, headers=admin)
    assert put.status_code == 200, put.text
    assert put.json() == {"org_id": org_id, "aliases": [a, b]}
    assert (await api.client.get(path, headers=admin)).json() == put.json()
    for taken in (taken_alias, other):  # another org's alias, or another org's id
        refused = await api.client.put(path, json={"aliases": [c, taken]}, headers=admin)
        assert refused.status_code == 409, refused.text
        assert refused.json()["code"] == "alias_taken"
        assert taken in refused.json()["detail"]
    assert (await api.client.get(path, headers=admin)).json()["aliases"] == [a, b]
    cleared = await api.client.put(path, json={"aliases": []}, headers=admin)
    assert cleared.json()["aliases"] == []
    # Freed: another org may take it now.
    assert await api.kernel.orgs.set_aliases(other, [a, taken_alias]) == [a, taken_alias]
    missing = await api.client.get("/api/v1/orgs/no-such-org/aliases", headers=admin)
    assert missing.status_code == 404
    too_many = await api.client.put(
        path, json={"aliases": [f"a{n}" for n in range(21)]}, headers=admin
    )
    assert too_many.status_code == 422


async def test_the_protocols_refuse_what_is_not_their_shape_and_write_nothing(api: Api) -> None:
    writer = await api.key(Scope.USAGE_WRITE)
    org_id = await org_with(api)
    before = await row_counts(api.database)
    cases = [
        ("/compat/lago/api/v1/events", b"{not json", 400),
        ("/compat/lago/api/v1/events", b'{"events": []}', 422),
        ("/compat/lago/api/v1/events/batch", b'{"events": []}', 422),
        ("/compat/lago/api/v1/events/batch", b'{"events": [1, "x"]}', 422),
        ("/compat/openmeter/api/v1/events", b"[]", 400),
        ("/compat/openmeter/api/v1/events", b'{"specversion": "0.3"}', 400),
        ("/compat/polar/v1/events/ingest", b'{"events": {}}', 422),
        ("/compat/stripe/v1/billing/meter_events", b"event_name=tokens", 400),
        ("/compat/stripe/v1/billing/meter_events", b"\xff\xfe", 400),
    ]
    for path, body, status in cases:
        response = await api.client.post(path, content=body, headers=writer)
        assert response.status_code == status, (path, body, response.text)
    timestamps = ["yesterday", True, "2026-11-01T00:00:00", 1e20, "12:00"]
    for timestamp in timestamps:
        response = await api.client.post(
            "/compat/lago/api/v1/events",
            json={
                "event": {
                    "transaction_id": "t",
                    "external_subscription_id": org_id,
                    "code": "tokens",
                    "timestamp": timestamp,
                    "properties": {"value": 1},
                }
            },
            headers=writer,
        )
        assert response.status_code == 422, (timestamp, response.text)
        assert "timestamp" in response.json()["error_details"]
    assert await row_counts(api.database) == before


async def test_a_key_for_one_org_records_only_that_orgs_events(api: Api) -> None:
    theirs_alias = new_id("cus_theirs")
    mine, theirs = await org_with(api), await org_with(api, theirs_alias)
    key = await api.key(Scope.USAGE_WRITE, org_id=mine)
    events = [
        {"name": "tokens", "external_customer_id": mine, "metadata": {"value": 5}},
        {"name": "tokens", "external_customer_id": theirs_alias, "metadata": {"value": 7}},
    ]
    refused = await api.client.post(
        "/compat/polar/v1/events/ingest", json={"events": events}, headers=key
    )
    assert refused.status_code == 403, refused.text
    assert (await used(api, mine), await used(api, theirs)) == (0, 0)
    accepted = await api.client.post(
        "/compat/polar/v1/events/ingest", json={"events": events[:1]}, headers=key
    )
    assert accepted.json() == {"inserted": 1, "duplicates": 0}
    assert await used(api, mine) == 5


async def test_stripe_takes_the_key_as_basic_user_and_the_idempotency_header(api: Api) -> None:
    org_id = await org_with(api)
    [token] = (await api.key(Scope.USAGE_WRITE))["Authorization"].split()[1:]
    basic = {"Authorization": "Basic " + base64.b64encode(f"{token}:".encode()).decode()}
    form = {
        "event_name": "tokens",
        "payload[stripe_customer_id]": org_id,
        "payload[value]": "3",
    }
    retry = {**basic, "Idempotency-Key": str(uuid.uuid4())}
    for _ in range(2):  # the library's own retry of one request: counted once
        sent = await api.client.post(
            "/compat/stripe/v1/billing/meter_events", data=form, headers=retry
        )
        assert sent.status_code == 200, sent.text
    assert sent.json()["identifier"] == retry["Idempotency-Key"]
    assert await used(api, org_id) == 3
    no_key = await api.client.post("/compat/stripe/v1/billing/meter_events", data=form)
    assert no_key.status_code == 401
    assert no_key.json()["error"]["type"] == "invalid_request_error"


async def test_a_key_without_the_scope_is_refused_in_the_protocols_shape(api: Api) -> None:
    reader = await api.key(Scope.QUOTA_CHECK)
    org_id = await org_with(api)
    lago = await api.client.post(
        "/compat/lago/api/v1/events/batch", json={"events": []}, headers=reader
    )
    assert (lago.status_code, lago.json()["code"]) == (401, "unauthorized")  # Lago has no 403
    value = await api.client.get(
        f"/compat/openmeter/api/v1/subjects/{org_id}/entitlements/tokens/value",
        headers=await api.key(Scope.USAGE_WRITE),
    )
    assert value.status_code == 403
    assert value.headers["content-type"] == "application/problem+json"
