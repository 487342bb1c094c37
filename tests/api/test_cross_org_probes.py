"""A key restricted to org A that names another org, through every compatible protocol, is
refused before anything is looked up or recorded, with the same status and body whatever
it names: B's id, B's alias, an org that does not exist, B's idempotency key with B's own
payload or another. So a key learns nothing of other orgs, and writes nothing for them."""

from __future__ import annotations

import base64
import re
from collections.abc import Awaitable, Callable

import httpx
import pytest

from billing_kernel.auth.rules import Scope
from tests.conftest import new_id, row_counts
from tests.web import Api

pytestmark = pytest.mark.anyio

Probe = Callable[[Api, dict[str, str], str, str, int], Awaitable[httpx.Response]]
"""A request through one protocol naming a customer, with an idempotency key and value."""


def lago(customer: str, tx: str, value: int) -> dict[str, object]:
    """A Lago event for `customer`."""
    return {
        "transaction_id": tx,
        "external_subscription_id": customer,
        "code": "tokens",
        "properties": {"value": value},
    }


async def lago_event(
    api: Api, key: dict[str, str], customer: str, tx: str, value: int
) -> httpx.Response:
    event = lago(customer, tx, value)
    return await api.client.post("/compat/lago/api/v1/events", json={"event": event}, headers=key)


async def lago_batch(
    api: Api, key: dict[str, str], customer: str, tx: str, value: int
) -> httpx.Response:
    event = lago(customer, tx, value)
    return await api.client.post(
        "/compat/lago/api/v1/events/batch", json={"events": [event]}, headers=key
    )


async def lago_usage(
    api: Api, key: dict[str, str], customer: str, tx: str, value: int
) -> httpx.Response:
    return await api.client.get(
        f"/compat/lago/api/v1/customers/{customer}/current_usage",
        params={"external_subscription_id": customer},
        headers=key,
    )


async def openmeter_event(
    api: Api, key: dict[str, str], customer: str, tx: str, value: int
) -> httpx.Response:
    event = {
        "specversion": "1.0",
        "id": tx,
        "source": "probe",
        "type": "tokens",
        "subject": customer,
        "data": {"value": value},
    }
    return await api.client.post(
        "/compat/openmeter/api/v1/events",
        json=event,
        headers={**key, "Content-Type": "application/cloudevents+json"},
    )


async def openmeter_value(
    api: Api, key: dict[str, str], customer: str, tx: str, value: int
) -> httpx.Response:
    return await api.client.get(
        f"/compat/openmeter/api/v1/subjects/{customer}/entitlements/tokens/value", headers=key
    )


async def stripe_event(
    api: Api, key: dict[str, str], customer: str, tx: str, value: int
) -> httpx.Response:
    [token] = key["Authorization"].split()[1:]
    basic = {"Authorization": "Basic " + base64.b64encode(f"{token}:".encode()).decode()}
    form = {
        "event_name": "tokens",
        "identifier": tx,
        "payload[stripe_customer_id]": customer,
        "payload[value]": str(value),
    }
    return await api.client.post("/compat/stripe/v1/billing/meter_events", data=form, headers=basic)


async def polar_event(
    api: Api, key: dict[str, str], customer: str, tx: str, value: int
) -> httpx.Response:
    event = {
        "name": "tokens",
        "external_customer_id": customer,
        "external_id": tx,
        "metadata": {"value": value},
    }
    return await api.client.post(
        "/compat/polar/v1/events/ingest", json={"events": [event]}, headers=key
    )


PROBES: dict[str, Probe] = {
    "lago event": lago_event,
    "lago batch": lago_batch,
    "lago current usage": lago_usage,
    "openmeter event": openmeter_event,
    "openmeter entitlement": openmeter_value,
    "stripe meter event": stripe_event,
    "polar ingest": polar_event,
}


def comparable(answer: httpx.Response) -> tuple[int, str]:
    """The status and body, less what differs by request (ids, the path's own text)."""
    text = re.sub(r'"(request_id|instance|id)":\s*"[^"]*"', '"\\1":"?"', answer.text)
    return answer.status_code, text


@pytest.mark.parametrize("protocol", list(PROBES))
async def test_a_one_org_key_learns_nothing_of_another_org(api: Api, protocol: str) -> None:
    probe = PROBES[protocol]
    mine_alias, theirs_alias = new_id("cus_mine"), new_id("cus_theirs")
    mine, theirs = new_id(), new_id()
    await api.kernel.orgs.create(mine)
    await api.kernel.orgs.set_aliases(mine, [mine_alias])
    await api.kernel.orgs.create(theirs)
    await api.kernel.orgs.set_aliases(theirs, [theirs_alias])
    their_key = await api.key(Scope.USAGE_WRITE, Scope.QUOTA_CHECK, org_id=theirs)
    used_tx = new_id("tx")
    assert (await probe(api, their_key, theirs, used_tx, 7)).status_code < 300
    key = await api.key(Scope.USAGE_WRITE, Scope.QUOTA_CHECK, org_id=mine)

    before = await row_counts(api.database)
    answers = {
        "their id": await probe(api, key, theirs, new_id("tx"), 1),
        "their alias": await probe(api, key, theirs_alias, new_id("tx"), 1),
        "no such org": await probe(api, key, new_id("nobody"), new_id("tx"), 1),
        "their key, their payload": await probe(api, key, theirs, used_tx, 7),
        "their key, another payload": await probe(api, key, theirs, used_tx, 8),
        "their alias, their key": await probe(api, key, theirs_alias, used_tx, 7),
    }
    assert await row_counts(api.database) == before  # nothing recorded, nothing created
    first = comparable(answers["their id"])
    refused = 401 if protocol.startswith("lago") else 403  # Lago documents no 403
    assert first[0] == refused, answers["their id"].text
    for what, answer in answers.items():
        assert comparable(answer) == first, (what, answer.text)
        assert theirs not in answer.text, what
        assert theirs_alias not in answer.text, what

    for own in (mine, mine_alias):  # its own org, by id or alias, is served
        assert (await probe(api, key, own, new_id("tx"), 1)).status_code < 300, own
