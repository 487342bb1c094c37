"""Atomic consume over HTTP: `POST /api/v1/billing/org/check` with `"consume": true`."""

import pytest

from billing_kernel.auth.rules import Scope
from billing_kernel.plans.rules import Enforcement
from billing_kernel.quota.rules import LimitOverride
from tests.conftest import new_id, row_counts
from tests.web import Api

pytestmark = pytest.mark.anyio

CHECK = "/api/v1/billing/org/check"


async def hard_org(api: Api, limit: int) -> str:
    org_id = new_id()
    await api.kernel.orgs.create(org_id, name="Acme", plan_slug="starter")
    override = LimitOverride(limit, sets_included=True, mode=Enforcement.HARD)
    await api.kernel.quota.set_override(org_id, "tokens", override)
    return org_id


async def test_a_consume_answers_the_decision_and_a_retry_the_same_marked_replayed(
    api: Api,
) -> None:
    org_id = await hard_org(api, 100)
    writer = await api.key(Scope.USAGE_WRITE) | {"X-Org-Id": org_id}
    body = {"metric": "tokens", "amount": 80, "consume": True, "idempotency_key": "run-1"}
    first = await api.client.post(CHECK, json=body, headers=writer)
    assert first.status_code == 200, first.text
    assert "Idempotent-Replayed" not in first.headers
    answer = first.json()
    assert (answer["allowed"], answer["consumed"], answer["used"], answer["remaining"]) == (
        True,
        True,
        0,
        100,
    )
    retry = await api.client.post(CHECK, json=body, headers=writer)
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert retry.json() == answer
    over = body | {"idempotency_key": "run-2", "amount": 21}
    refused = (await api.client.post(CHECK, json=over, headers=writer)).json()
    assert (refused["allowed"], refused["consumed"], refused["reason"]) == (
        False,
        False,
        "limit_reached",
    )
    assert refused["upgrade"]["plan_slug"] == "growth"
    reader = await api.key(Scope.QUOTA_CHECK) | {"X-Org-Id": org_id}
    check = (await api.client.post(CHECK, json={"metric": "tokens"}, headers=reader)).json()
    assert (check["used"], check["consumed"]) == (80, False)


async def test_consuming_takes_a_key_with_usage_write(api: Api) -> None:
    org_id = await hard_org(api, 100)
    body = {"metric": "tokens", "consume": True, "idempotency_key": "k"}
    reader = await api.key(Scope.QUOTA_CHECK) | {"X-Org-Id": org_id}
    member = await api.member(org_id)
    writer = await api.key(Scope.USAGE_WRITE) | {"X-Org-Id": org_id}
    before = await row_counts(api.database)
    for headers in (reader, member):
        answer = await api.client.post(CHECK, json=body, headers=headers)
        assert answer.status_code == 403, answer.text
        assert "usage:write" in answer.json()["detail"]
    only_writes = await api.client.post(CHECK, json={"metric": "tokens"}, headers=writer)
    assert only_writes.status_code == 403  # a check reads usage: quota:check
    assert await row_counts(api.database) == before


async def test_bad_consumes_are_refused_with_what_is_wrong_and_write_nothing(api: Api) -> None:
    org_id = await hard_org(api, 100)
    writer = await api.key(Scope.USAGE_WRITE) | {"X-Org-Id": org_id}
    used = {"metric": "tokens", "amount": 5, "consume": True, "idempotency_key": "used"}
    assert (await api.client.post(CHECK, json=used, headers=writer)).status_code == 200
    before = await row_counts(api.database)
    for bad, status, named in (
        ({"metric": "tokens", "consume": True}, 422, "idempotency_key is required"),
        ({"metric": "tokens", "consume": True, "idempotency_key": ""}, 422, "idempotency_key"),
        ({"metric": "tokens", "consume": "yes", "idempotency_key": "a"}, 422, "consume"),
        ({"metric": "tokens", "idempotency_key": "a"}, 422, "only with consume"),
        ({"metric": "seats", "consume": True, "idempotency_key": "a"}, 422, "seats"),
        ({"metric": "nope", "consume": True, "idempotency_key": "a"}, 404, "nope"),
        (used | {"amount": 6}, 409, "consume 5 tokens"),
    ):
        answer = await api.client.post(CHECK, json=bad, headers=writer)
        assert answer.status_code == status, (bad, answer.text)
        assert named in answer.json()["detail"], (bad, answer.text)
    assert await row_counts(api.database) == before
