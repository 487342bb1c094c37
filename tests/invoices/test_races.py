"""Invoice state changes raced as real concurrent requests on PostgreSQL: each changes an
invoice only from the state it checked, the loser of a race gets a 409 that says why, and
`verify` finds nothing wrong after any of them."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest

from billing_kernel.auth.rules import Scope
from billing_kernel.common.periods import BillingPeriod
from billing_kernel.config import Settings
from billing_kernel.db.database import Database
from billing_kernel.invoices.rules import StoredInvoice
from billing_kernel.kernel import Kernel
from billing_kernel.orgs.rules import BillingStatus
from tests.conftest import Clock, new_id
from tests.web import Api, app_for

pytestmark = pytest.mark.anyio

ROUNDS = 50
APRIL = BillingPeriod.parse("2026-04")


@pytest.fixture
async def pg_api(pg_database: Database) -> AsyncIterator[Api]:
    async with app_for(pg_database) as client:
        kernel = Kernel(pg_database, Settings(database_url=str(pg_database.url)))
        yield Api(client, kernel, pg_database)


async def open_invoice(api: Api) -> StoredInvoice:
    """A new org's April invoice, open."""
    org_id = new_id()
    clock = Clock(APRIL.start)
    early = Kernel(api.database, api.kernel.settings, clock=clock)  # type: ignore[arg-type]
    await early.orgs.create(org_id, plan_slug="starter")
    await early.subscriptions.set_status(org_id, BillingStatus.ACTIVE)
    await early.usage.record(org_id, "playbook_runs", 210, idempotency_key="runs")
    clock.now = APRIL.end + timedelta(days=3)
    invoice = await early.invoices.close(org_id, APRIL)
    assert invoice is not None
    assert invoice.status == "open"
    return invoice


def outcome(answer: httpx.Response) -> tuple[int, str]:
    return answer.status_code, answer.json().get("code", answer.json().get("status"))


async def test_mark_paid_racing_void_one_wins_and_the_other_is_told_why(pg_api: Api) -> None:
    admin = await pg_api.key(Scope.BILLING_ADMIN)
    seen: Counter[tuple[tuple[int, str], tuple[int, str]]] = Counter()
    for _ in range(ROUNDS):
        invoice = await open_invoice(pg_api)
        url = f"/api/v1/billing/invoices/{invoice.invoice_id}"
        paid, voided = await asyncio.gather(
            pg_api.client.post(f"{url}/mark-paid", headers=admin),
            pg_api.client.post(f"{url}/void", json={"reason": "raced"}, headers=admin),
        )
        pair = (outcome(paid), outcome(voided))
        seen[pair] += 1
        after = await pg_api.kernel.invoices.get(invoice.invoice_id)
        live = await pg_api.kernel.invoices.list_invoices(invoice.org_id)
        if pair == ((200, "paid"), (409, "invoice_paid")):
            assert (after.status, after.voided_at) == ("paid", None)
            assert [i.invoice_id for i in live] == [invoice.invoice_id]  # no correction
        else:
            assert pair == ((409, "invoice_not_open"), (200, "open")), pair
            assert (after.status, after.paid_at) == ("void", None)
            assert voided.json()["replaces"] == invoice.invoice_id
            assert [i.status for i in live] == ["open", "void"]  # the correction, then it
    assert sum(seen.values()) == ROUNDS
    assert await pg_api.kernel.invoices.verify() == []


async def test_three_concurrent_voids_make_one_correction_and_two_conflicts(pg_api: Api) -> None:
    admin = await pg_api.key(Scope.BILLING_ADMIN)
    for _ in range(ROUNDS):
        invoice = await open_invoice(pg_api)
        url = f"/api/v1/billing/invoices/{invoice.invoice_id}/void"
        answers = await asyncio.gather(
            *(
                pg_api.client.post(url, json={"reason": f"void {n}"}, headers=admin)
                for n in (1, 2, 3)
            )
        )
        assert sorted(outcome(a) for a in answers) == [
            (200, "open"),
            (409, "invoice_not_open"),
            (409, "invoice_not_open"),
        ], [a.text for a in answers]
        live = await pg_api.kernel.invoices.list_invoices(invoice.org_id)
        assert [i.status for i in live] == ["open", "void"]
    assert await pg_api.kernel.invoices.verify() == []


async def test_concurrent_payments_of_one_invoice_all_answer_paid_once(pg_api: Api) -> None:
    admin = await pg_api.key(Scope.BILLING_ADMIN)
    for _ in range(ROUNDS):
        invoice = await open_invoice(pg_api)
        url = f"/api/v1/billing/invoices/{invoice.invoice_id}/mark-paid"
        answers = await asyncio.gather(*(pg_api.client.post(url, headers=admin) for _ in range(3)))
        assert [outcome(a) for a in answers] == [(200, "paid")] * 3
        assert len({a.json()["paid_at"] for a in answers}) == 1  # paid once, read thrice


async def test_another_orgs_invoice_is_not_found_for_a_one_org_key(pg_api: Api) -> None:
    invoice = await open_invoice(pg_api)
    mine = await pg_api.key(Scope.BILLING_ADMIN, org_id=new_id())
    url = f"/api/v1/billing/invoices/{invoice.invoice_id}"
    missing = f"/api/v1/billing/invoices/inv_{'0' * 24}"
    for path, body in (("mark-paid", None), ("void", {"reason": "probe"})):
        theirs = await pg_api.client.post(f"{url}/{path}", json=body, headers=mine)
        nothing = await pg_api.client.post(f"{missing}/{path}", json=body, headers=mine)
        assert (theirs.status_code, theirs.json()["code"]) == (404, "invoice_not_found")
        assert theirs.json()["detail"].replace(invoice.invoice_id, "?") == nothing.json()[
            "detail"
        ].replace(f"inv_{'0' * 24}", "?")
        assert invoice.org_id not in theirs.text
    assert (await pg_api.kernel.invoices.get(invoice.invoice_id)).status == "open"
