"""The upcoming invoice over HTTP: owners, admins and billing:admin keys; money as decimal
strings; every line with its formula."""

import pytest

from billing_kernel.auth.rules import Scope
from billing_kernel.members.rules import MemberRole
from billing_kernel.orgs.rules import BillingStatus
from tests.api.conftest import Api
from tests.conftest import new_id

pytestmark = pytest.mark.anyio

URL = "/api/v1/billing/org/invoices/upcoming"


async def test_the_upcoming_invoice_is_for_owners_admins_and_billing_admin_keys(api: Api) -> None:
    org_id = new_id()
    owner = await api.member(org_id, MemberRole.OWNER)
    await api.kernel.orgs.set_status(org_id, BillingStatus.ACTIVE)
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
        "starts_at": None,
    }
    assert invoice["lines"][0]["kind"] == "proration_charge"  # active from today
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
