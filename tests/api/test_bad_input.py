"""Input that once answered 500, as a table, on both databases: times and months the kernel
cannot represent, a NUL or a lone UTF-16 surrogate in a body, a path, a query, a header or
an event's nested properties. Each is refused with a 4xx that names what is wrong, and
nothing is written."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from billing_kernel.auth.rules import Scope
from tests.conftest import new_id, row_counts
from tests.web import Api

pytestmark = pytest.mark.anyio

TIMES = ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"]
MONTHS = ["9999-12", "0999-12"]
NUL, SURROGATE = "\\u0000", "\\ud800"  # as JSON writes them


@dataclass(frozen=True)
class Case:
    method: str
    path: str
    body: str | None = None
    params: dict[str, str] | None = None
    headers: dict[str, str] | None = None
    names: str = ""
    """What the answer must name."""
    per_event: bool = False
    """A native batch answers 200 and refuses the event in its result."""


def cases(org: str) -> list[Case]:
    found = []
    for t in TIMES:
        found += [
            Case(
                "POST",
                "/api/v1/billing/org/plan",
                f'{{"plan_slug": "growth", "at": "{t}"}}',
                names="at",
            ),
            Case("GET", f"/api/v1/orgs/{org}/events", params={"from": t}, names="from"),
            Case("GET", f"/api/v1/orgs/{org}/events", params={"to": t}, names="to"),
            Case("GET", f"/api/v1/orgs/{org}/events.csv", params={"from": t}, names="from"),
            Case(
                "POST",
                "/compat/lago/api/v1/events",
                f'{{"event": {{"transaction_id": "t", "external_subscription_id": "{org}", '
                f'"code": "tokens", "timestamp": "{t}", "properties": {{"value": 1}}}}}}',
                names="timestamp",
            ),
            Case(
                "POST",
                "/compat/polar/v1/events/ingest",
                f'{{"events": [{{"name": "tokens", "external_customer_id": "{org}", '
                f'"timestamp": "{t}", "metadata": {{"value": 1}}}}]}}',
                names="timestamp",
            ),
            Case(
                "POST",
                "/compat/openmeter/api/v1/events",
                f'{{"specversion": "1.0", "id": "o", "source": "s", "type": "tokens", '
                f'"subject": "{org}", "time": "{t}", "data": {{"value": 1}}}}',
                headers={"Content-Type": "application/cloudevents+json"},
                names="time",
            ),
        ]
    for m in MONTHS:
        found += [
            Case("GET", "/api/v1/billing/org/summary", params={"period": m}, names="period"),
            Case("GET", f"/api/v1/orgs/{org}/usage", params={"from": m}, names="from"),
            Case("GET", f"/api/v1/orgs/{org}/usage.csv", params={"to": m}, names="to"),
            Case("GET", f"/api/v1/orgs/{org}/alerts", params={"period": m}, names="period"),
        ]
    for bad in (NUL, SURROGATE):
        found += [
            Case(
                "POST",
                "/api/v1/usage/events",
                f'{{"events": [{{"org_id": "{org}", "metric": "tokens", "quantity": 1, '
                f'"idempotency_key": "k", "properties": {{"a": {{"b": ["{bad}"]}}}}}}]}}',
                names="properties",
                per_event=True,
            ),
            Case(
                "POST",
                "/compat/lago/api/v1/events",
                f'{{"event": {{"transaction_id": "t", "external_subscription_id": "x{bad}", '
                f'"code": "tokens", "properties": {{"value": 1}}}}}}',
                names="external_subscription_id",
            ),
            Case("PUT", f"/api/v1/orgs/{org}", f'{{"name": "a{bad}"}}', names="name"),
        ]
    found += [
        Case(
            "GET", f"/api/v1/orgs/{org}/events", params={"cursor": "1|tokens|a\x00b"}, names="query"
        ),
        Case(
            "GET", "/api/v1/billing/org/summary", headers={"X-Org-Id": "a\x00b"}, names="x-org-id"
        ),
        Case("GET", f"/api/v1/orgs/{org}%00x/usage", names="path"),
    ]
    return found


@pytest.fixture
async def org_and_key(api: Api) -> tuple[str, dict[str, str]]:
    org_id = new_id()
    await api.kernel.orgs.create(org_id, plan_slug="starter")
    _, key = await api.kernel.api_keys.create(
        [Scope.BILLING_ADMIN, Scope.USAGE_WRITE, Scope.QUOTA_CHECK], org_id=org_id
    )
    return org_id, {"Authorization": f"Bearer {key}"}


async def test_input_that_answered_500_is_refused_naming_what_is_wrong(
    api: Api, org_and_key: tuple[str, dict[str, str]]
) -> None:
    org_id, auth = org_and_key
    before = await row_counts(api.database)
    for case in cases(org_id):
        headers = {**auth, "Content-Type": "application/json", **(case.headers or {})}
        answer = await api.client.request(
            case.method,
            case.path,
            content=None if case.body is None else case.body.encode(),
            params=case.params,
            headers=headers,
        )
        if case.per_event:
            assert (answer.status_code, answer.json()["refused"]) == (200, 1), case
        else:
            assert 400 <= answer.status_code < 500, (case, answer.status_code, answer.text)
        assert case.names in answer.text.lower(), (case, answer.text)
    assert await row_counts(api.database) == before
