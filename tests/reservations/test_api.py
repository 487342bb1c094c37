"""Reservations over HTTP: `/api/v1/usage/reservations`."""

import pytest

from billing_kernel.auth.rules import Scope
from tests.conftest import row_counts
from tests.quota.test_api import CHECK, hard_org
from tests.web import Api

pytestmark = pytest.mark.anyio

RESERVATIONS = "/api/v1/usage/reservations"


async def test_a_reservation_holds_units_until_its_usage_is_committed(api: Api) -> None:
    org_id = await hard_org(api, 100)
    writer = await api.key(Scope.USAGE_WRITE, Scope.QUOTA_CHECK, org_id=org_id)
    body = {"org_id": org_id, "metric": "tokens", "estimate": 70, "idempotency_key": "llm-1"}
    made = await api.client.post(RESERVATIONS, json=body, headers=writer)
    assert made.status_code == 201, made.text
    assert "Idempotent-Replayed" not in made.headers
    r = made.json()
    assert r["id"].startswith("rsv_")
    assert (r["status"], r["estimate"], r["committed_quantity"], r["settled_at"]) == (
        "held",
        70,
        None,
        None,
    )
    assert (r["decision"]["allowed"], r["decision"]["remaining"]) == (True, 100)
    retry = await api.client.post(RESERVATIONS, json=body, headers=writer)
    assert (retry.status_code, retry.headers["Idempotent-Replayed"]) == (201, "true")
    assert retry.json() == r

    check = (await api.client.post(CHECK, json={"metric": "tokens"}, headers=writer)).json()
    assert (check["used"], check["held"], check["remaining"]) == (0, 70, 30)
    second = body | {"idempotency_key": "llm-2", "estimate": 31}
    refused = (await api.client.post(RESERVATIONS, json=second, headers=writer)).json()
    assert (refused["status"], refused["decision"]["reason"]) == ("refused", "limit_reached")
    assert refused["decision"]["message"].startswith("Acme has 30 tokens left in Starter")

    commit = f"{RESERVATIONS}/{r['id']}/commit"
    committed = await api.client.post(commit, json={"quantity": 85}, headers=writer)
    assert committed.status_code == 200, committed.text
    c = committed.json()
    assert (c["status"], c["committed_quantity"], c["decision"]) == ("committed", 85, None)
    assert (await api.client.post(commit, json={"quantity": 85}, headers=writer)).json() == c
    read = await api.client.get(f"{RESERVATIONS}/{r['id']}", headers=writer)
    assert read.json() == c
    check = (await api.client.post(CHECK, json={"metric": "tokens"}, headers=writer)).json()
    assert (check["used"], check["held"], check["remaining"]) == (85, 0, 15)


async def test_a_settled_reservation_says_why_it_cannot_be_settled_again(api: Api) -> None:
    org_id = await hard_org(api, 100)
    writer = await api.key(Scope.USAGE_WRITE, org_id=org_id)
    body = {"org_id": org_id, "metric": "tokens", "estimate": 10, "idempotency_key": "k"}
    rid = (await api.client.post(RESERVATIONS, json=body, headers=writer)).json()["id"]
    release = f"{RESERVATIONS}/{rid}/release"
    released = await api.client.post(release, headers=writer)
    assert (released.status_code, released.json()["status"]) == (200, "released")
    assert (await api.client.post(release, headers=writer)).json() == released.json()
    before = await row_counts(api.database)
    late = await api.client.post(
        f"{RESERVATIONS}/{rid}/commit", json={"quantity": 1}, headers=writer
    )
    assert late.status_code == 409
    assert late.json()["code"] == "reservation_settled"
    assert "was released and holds nothing to commit" in late.json()["detail"]
    assert await row_counts(api.database) == before

    other = body | {"idempotency_key": "k2"}
    rid2 = (await api.client.post(RESERVATIONS, json=other, headers=writer)).json()["id"]
    commit = f"{RESERVATIONS}/{rid2}/commit"
    await api.client.post(commit, json={"quantity": 4}, headers=writer)
    again = await api.client.post(commit, json={"quantity": 5}, headers=writer)
    assert (again.status_code, again.json()["code"]) == (409, "idempotency_conflict")
    undo = await api.client.post(f"{RESERVATIONS}/{rid2}/release", headers=writer)
    assert (undo.status_code, undo.json()["code"]) == (409, "reservation_settled")


async def test_reservations_take_a_key_with_usage_write_for_the_org(api: Api) -> None:
    org_id = await hard_org(api, 100)
    other_org = await hard_org(api, 100)
    body = {"org_id": org_id, "metric": "tokens", "estimate": 1, "idempotency_key": "k"}
    reader = await api.key(Scope.QUOTA_CHECK, org_id=org_id)
    elsewhere = await api.key(Scope.USAGE_WRITE, org_id=other_org)
    before = await row_counts(api.database)
    assert (await api.client.post(RESERVATIONS, json=body, headers=reader)).status_code == 403
    assert (await api.client.post(RESERVATIONS, json=body, headers=elsewhere)).status_code == 403
    assert await row_counts(api.database) == before

    writer = await api.key(Scope.USAGE_WRITE, org_id=org_id)
    rid = (await api.client.post(RESERVATIONS, json=body, headers=writer)).json()["id"]
    for answer in (  # another org's key does not see it
        await api.client.get(f"{RESERVATIONS}/{rid}", headers=elsewhere),
        await api.client.post(f"{RESERVATIONS}/{rid}/release", headers=elsewhere),
    ):
        assert (answer.status_code, answer.json()["code"]) == (404, "reservation_not_found")
    admin = await api.key(Scope.BILLING_ADMIN)
    assert (await api.client.get(f"{RESERVATIONS}/{rid}", headers=admin)).json()["id"] == rid
    denied = await api.client.post(f"{RESERVATIONS}/{rid}/release", headers=admin)
    assert denied.status_code == 403


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"ttl_seconds": 0}, "ttl_seconds"),
        ({"ttl_seconds": 86_401}, "ttl_seconds"),
        ({"ttl_seconds": 1.5}, "ttl_seconds"),
        ({"estimate": -1}, "estimate"),
        ({"estimate": "10"}, "estimate"),
        ({"idempotency_key": ""}, "idempotency_key"),
        ({"org_id": " acme"}, "org_id"),
        ({"org_id": "x" * 65}, "org_id"),
        ({"unknown": 1}, "unknown"),
    ],
)
async def test_a_bad_reservation_is_refused_by_name_and_writes_nothing(
    api: Api, change: dict[str, object], field: str
) -> None:
    org_id = await hard_org(api, 100)
    writer = await api.key(Scope.USAGE_WRITE)
    body = {"org_id": org_id, "metric": "tokens", "estimate": 1, "idempotency_key": "k"}
    before = await row_counts(api.database)
    answer = await api.client.post(RESERVATIONS, json=body | change, headers=writer)
    assert answer.status_code == 422, answer.text
    assert field in answer.text
    assert await row_counts(api.database) == before


async def test_an_unknown_or_malformed_reservation_id(api: Api) -> None:
    writer = await api.key(Scope.USAGE_WRITE)
    missing = await api.client.get(f"{RESERVATIONS}/rsv_{'0' * 32}", headers=writer)
    assert (missing.status_code, missing.json()["code"]) == (404, "reservation_not_found")
    malformed = await api.client.get(f"{RESERVATIONS}/not-an-id", headers=writer)
    assert malformed.status_code == 422
    assert "reservation_id" in malformed.text
    seats = {"org_id": "x-org", "metric": "seats", "estimate": 1, "idempotency_key": "k"}
    refused = await api.client.post(RESERVATIONS, json=seats, headers=writer)
    assert (refused.status_code, refused.json()["code"]) == (422, "invalid_input")
