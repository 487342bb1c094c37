"""The upcoming invoice over HTTP: owners, admins and billing:admin keys; money as decimal
strings; every line with its formula."""

from datetime import timedelta

import pytest

from billing_kernel.auth.rules import Scope
from billing_kernel.common.periods import BillingPeriod
from billing_kernel.kernel import Kernel
from billing_kernel.members.rules import MemberRole
from billing_kernel.orgs.rules import BillingStatus
from tests.conftest import Clock, new_id
from tests.web import Api

pytestmark = pytest.mark.anyio

URL = "/api/v1/billing/org/invoices/upcoming"


async def test_the_upcoming_invoice_is_for_owners_admins_and_billing_admin_keys(api: Api) -> None:
    org_id = new_id()
    owner = await api.member(org_id, MemberRole.OWNER)
    await api.kernel.subscriptions.set_status(org_id, BillingStatus.ACTIVE)
    await api.kernel.usage.record(org_id, "playbook_runs", 205, idempotency_key="r")
    answer = await api.client.get(URL, headers=owner)
    assert answer.status_code == 200, answer.text
    invoice = answer.json()
    assert (invoice["status"], invoice["currency"], invoice["org_id"]) == ("draft", "USD", org_id)
    overage = invoice["lines"][-1]
    assert overage == {
        "number": len(invoice["lines"]),
        "kind": "overage",
        "description": "Playbook runs: 5 runs over the 200 included",
        "amount": "1.25",
        "formula": "(205 - 200) x 0.25 = 1.25 → 1.25",
        "plan_slug": "starter",
        "plan_version": 1,
        "metric": "playbook_runs",
        "quantity": 5,
        "unit_price": "0.25",
        "unit_size": 1,
        "seconds": None,
        "starts_at": None,
        "coupon": None,
        "dimension": None,
        "dimension_value": None,
        "period": invoice["period"],
    }
    fee = invoice["lines"][0]
    assert fee["kind"] == "proration_charge"  # active from today
    assert (fee["quantity"], fee["unit_price"], fee["metric"]) == (1, "49.00", None)
    assert 0 < fee["seconds"] <= 31 * 86_400
    assert f"x {fee['seconds']:,} s /" in fee["formula"]
    total = sum(float(line["amount"]) for line in invoice["lines"])
    assert invoice["total"] == invoice["subtotal"] == f"{total:.2f}"

    key = await api.key(Scope.BILLING_ADMIN)
    by_key = await api.client.get(URL, headers={**key, "X-Org-Id": org_id})
    assert by_key.json()["lines"] == invoice["lines"]
    member = await api.member(org_id, MemberRole.MEMBER)
    reader = await api.key(Scope.QUOTA_CHECK, org_id=org_id)
    for refused in (member, reader):
        assert (await api.client.get(URL, headers=refused)).status_code == 403
    unknown = await api.client.get(URL, headers={**key, "X-Org-Id": new_id()})
    assert unknown.status_code == 404


async def test_finalized_invoices_are_listed_read_explained_paid_and_voided(api: Api) -> None:
    april = BillingPeriod.parse("2026-04")
    org_id = new_id()
    clock = Clock(april.start)
    early = Kernel(api.database, api.kernel.settings, clock=clock)  # type: ignore[arg-type]
    await early.orgs.create(org_id, plan_slug="starter")
    await early.subscriptions.set_status(org_id, BillingStatus.ACTIVE)
    clock.now = april.start + timedelta(days=3)
    await early.usage.record(org_id, "playbook_runs", 203, idempotency_key="runs-1")
    clock.now = april.end + timedelta(days=2)
    invoice = await early.invoices.close(org_id, april)
    assert invoice is not None
    owner = await api.member(org_id, MemberRole.OWNER)

    listed = (await api.client.get("/api/v1/billing/org/invoices", headers=owner)).json()
    assert [i["number"] for i in listed["data"]][-1] == invoice.number
    assert listed["data"][-1]["lines"] is None  # lists leave the lines out
    url = f"/api/v1/billing/org/invoices/{invoice.invoice_id}"
    whole = (await api.client.get(url, headers=owner)).json()
    assert (whole["period"], whole["status"], whole["total"]) == ("2026-04", "open", "49.75")
    assert [(line["kind"], line["amount"]) for line in whole["lines"]] == [
        ("base_fee", "49.00"),
        ("overage", "0.75"),
    ]
    runs = next(u for u in whole["usage"] if u["metric"] == "playbook_runs")
    assert (runs["quantity"], runs["events"], runs["included"]) == (203, 1, 200)
    assert (await api.client.get(url, headers=owner)).content == (
        await api.client.get(url, headers=owner)
    ).content  # the same bytes, read after read
    explained = (await api.client.get(f"{url}/lines/2", headers=owner)).json()
    assert (explained["events"], explained["sample_keys"]) == (1, ["runs-1"])
    assert explained["line"]["formula"] == "(203 - 200) x 0.25 = 0.75 → 0.75"
    assert (await api.client.get(f"{url}/lines/9", headers=owner)).status_code == 404
    stranger = await api.member(new_id(), MemberRole.OWNER)
    assert (await api.client.get(url, headers=stranger)).status_code == 404

    admin = await api.key(Scope.BILLING_ADMIN)
    void_url = f"/api/v1/billing/invoices/{invoice.invoice_id}/void"
    no_reason = await api.client.post(void_url, json={"reason": ""}, headers=admin)
    assert no_reason.status_code == 422
    other_org = await api.key(Scope.BILLING_ADMIN, org_id=new_id())
    refused = await api.client.post(void_url, json={"reason": "x"}, headers=other_org)
    assert (refused.status_code, refused.json()["code"]) == (404, "invoice_not_found")
    corrected = await api.client.post(void_url, json={"reason": "seats misread"}, headers=admin)
    assert corrected.status_code == 200, corrected.text
    assert corrected.json()["replaces"] == invoice.invoice_id
    assert corrected.json()["total"] == "49.75"
    again = await api.client.post(void_url, json={"reason": "again"}, headers=admin)
    assert (again.status_code, again.json()["code"]) == (409, "invoice_not_open")
    paid_url = f"/api/v1/billing/invoices/{corrected.json()['invoice_id']}/mark-paid"
    paid = await api.client.post(paid_url, headers=admin)
    assert (paid.status_code, paid.json()["status"]) == (200, "paid")
    assert (await api.client.post(paid_url, headers=admin)).json() == paid.json()  # idempotent
