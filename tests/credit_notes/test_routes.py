"""Credit notes over the API: issued by the product's backend with a `billing:admin` key,
read by the org's owners; refused, naming why, otherwise."""

from decimal import Decimal

import pytest
import stripe

from billing_kernel.auth.rules import Scope
from billing_kernel.db.database import Database
from billing_kernel.members.rules import MemberRole
from tests.conftest import Clock, new_id
from tests.credit_notes.test_service import paid
from tests.payments.conftest import WEBHOOK_SECRET
from tests.payments.stripe_server import TEST_KEY, StripeServer
from tests.payments.test_service import invoiced, paying
from tests.web import app_for, bearer, user_token

pytestmark = pytest.mark.anyio


async def test_a_backend_issues_a_credit_note_and_the_owner_reads_it(
    database: Database, clock: Clock, server: StripeServer, stripe_client: stripe.StripeClient
) -> None:
    kernel = paying(database, clock, server)
    invoice = await paid(kernel, clock, stripe_client)
    other = await invoiced(kernel, clock)
    owner = new_id("owner")
    await kernel.members.add(invoice.org_id, owner, MemberRole.OWNER)
    _, plaintext = await kernel.api_keys.create([Scope.BILLING_ADMIN], org_id=invoice.org_id)
    key = {"Authorization": f"Bearer {plaintext}"}
    url = f"/api/v1/billing/invoices/{invoice.invoice_id}/credit-notes"
    stripe_settings = {"stripe_api_key": TEST_KEY, "stripe_webhook_secret": WEBHOOK_SECRET}
    async with app_for(database, stripe_api_base=server.base, **stripe_settings) as http:
        for body, field in (
            ({"reason": "x", "lines": [{"line": 1}, {"line": 1}]}, "lines"),
            ({"reason": "x", "lines": [{"line": 9}]}, "lines.9"),
            ({"reason": "x", "lines": [{"line": 1, "amount": "49.01"}]}, "lines.1"),
            ({"reason": "x", "lines": [{"line": 1, "amount": "-1"}]}, "body.lines.0.amount"),
            ({"reason": "x", "lines": [{"line": 1, "amount": "0"}]}, "lines.1"),
            ({"reason": "x", "lines": [{"line": 1, "amount": "0.001"}]}, "lines.1"),
            ({"reason": "x", "lines": []}, "body.lines"),
            ({"lines": [{"line": 1}]}, "body.reason"),
            ({"reason": "x", "refund": True}, "body.refund"),
        ):
            refused = await http.post(url, json=body, headers=key)
            assert refused.status_code == 422, (body, refused.text)
            assert [e["location"] for e in refused.json()["errors"]] == [field], body
        made = await http.post(
            url,
            json={"reason": "outage", "lines": [{"line": 1, "amount": "10.00"}, {"line": 2}]},
            headers=key,
        )
        assert made.status_code == 200, made.text
        note = made.json()
        assert {k: note[k] for k in ("number", "amount", "currency", "refund_status")} == {
            "number": "CN-000001",
            "amount": "10.75",
            "currency": "USD",
            "refund_status": "pending",
        }
        assert [(line["line"], line["amount"]) for line in note["lines"]] == [
            (1, "10.00"),
            (2, "0.75"),
        ]
        await kernel.credit_notes.refund_due()
        listed = f"/api/v1/billing/org/invoices/{invoice.invoice_id}/credit-notes"
        read = await http.get(listed, headers=bearer(user_token(owner)))
        assert read.status_code == 200, read.text
        [shown] = read.json()["data"]
        assert (shown["credit_note_id"], shown["refund_status"]) == (
            note["credit_note_id"],
            "refunded",
        )
        got = await http.get(f"/api/v1/billing/org/invoices/{invoice.invoice_id}", headers=key)
        assert (got.json()["status"], got.json()["credited"]) == ("paid", "10.75")
        rest = await http.post(url, json={"reason": "the rest"}, headers=key)
        assert rest.json()["amount"] == "39.00"
        done = await http.post(url, json={"reason": "again"}, headers=key)
        assert (done.status_code, done.json()["code"]) == (409, "invoice_credited")
        elsewhere = f"/api/v1/billing/invoices/{other.invoice_id}/credit-notes"
        assert (await http.post(elsewhere, json={"reason": "x"}, headers=key)).status_code == 404
        void = await http.post(
            f"/api/v1/billing/invoices/{invoice.invoice_id}/void",
            json={"reason": "wrong"},
            headers=key,
        )
        assert (void.status_code, void.json()["code"]) == (409, "invoice_paid")
        checker = (await kernel.api_keys.create([Scope.QUOTA_CHECK], org_id=invoice.org_id))[1]
        denied = await http.post(
            url, json={"reason": "x"}, headers={"Authorization": f"Bearer {checker}"}
        )
        assert denied.status_code == 403
    assert (await kernel.invoices.get(invoice.invoice_id)).credited == Decimal("49.75")
