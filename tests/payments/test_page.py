"""The billing page of a deployment that collects through Stripe, in Chromium: the card on
file, each invoice's payment, and "Update card" sending the owner to Stripe's Checkout."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path

import pytest
import stripe
from playwright.sync_api import Browser, Page, Route

from billing_kernel.db.database import Database
from billing_kernel.members.rules import MemberRole
from tests.conftest import Clock, make_kernel, new_id, own_database_url
from tests.dashboard.test_browser import browser, open_page, screenshot
from tests.live import KernelServer
from tests.payments.conftest import DECLINES_WHEN_CHARGED, PAYS, WEBHOOK_SECRET
from tests.payments.stripe_server import TEST_KEY, StripeServer
from tests.payments.test_service import MAY, card_through_checkout, invoiced

__all__ = ["browser"]  # the browser tests' Chromium, shared

STRIPE = {"stripe_api_key": TEST_KEY, "stripe_webhook_secret": WEBHOOK_SECRET}


async def seed(url: str, server: StripeServer) -> dict[str, str]:
    """Two orgs with May invoiced: one paid by card (and USD 10.00 of it credited back),
    one whose card declined."""
    database = Database(url)
    clock = Clock(MAY.start)
    kernel = make_kernel(database, clock, stripe_api_base=server.base, **STRIPE)
    client = stripe.StripeClient(TEST_KEY, base_addresses={"api": server.base})
    ids: dict[str, str] = {}
    made = {}
    try:
        for name, card in (("paid", PAYS), ("declined", DECLINES_WHEN_CHARGED)):
            invoice = await invoiced(kernel, clock)
            owner = new_id("owner")
            await kernel.members.add(invoice.org_id, owner, MemberRole.OWNER)
            await card_through_checkout(kernel, server, client, invoice.org_id, card)
            ids[name], made[name] = owner, invoice
        await kernel.payments.collect_due()
        await kernel.credit_notes.issue(made["paid"].invoice_id, "outage", [(1, Decimal("10.00"))])
    finally:
        await database.dispose()
    return ids


@pytest.fixture(scope="module")
def page_kernel(
    server: StripeServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, dict[str, str]]]:
    # Playwright's sync API keeps an event loop on this thread: seed from another one.
    with ThreadPoolExecutor(1) as worker:
        scratch = own_database_url("postgres", tmp_path_factory.mktemp("payments-page"))
        url = worker.submit(scratch.__enter__).result()
        ids = worker.submit(asyncio.run, seed(url, server)).result()
        env = {
            "BILLING_STRIPE_API_KEY": TEST_KEY,
            "BILLING_STRIPE_API_BASE": server.base,
            "BILLING_STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        }
        log = tmp_path_factory.mktemp("payments-page-log") / "serve.log"
        running = KernelServer(url, env=env, log=log).start()
        try:
            yield running.url, ids
        finally:
            running.stop()
            worker.submit(scratch.__exit__, None, None, None).result()


def to_stripe(page: Page, button: str) -> list[str]:
    """Click `button` and follow the redirect to Stripe's Checkout: the URLs reached."""
    reached: list[str] = []

    def at_stripe(route: Route) -> None:  # Stripe's page: not on this machine's network
        reached.append(route.request.url)
        route.fulfill(status=200, body="Stripe Checkout", content_type="text/plain")

    page.route("https://checkout.stripe.com/**", at_stripe)
    page.get_by_test_id(button).click()
    page.wait_for_url("https://checkout.stripe.com/**")
    return reached


def test_the_page_shows_the_card_and_each_invoices_payment(
    browser: Browser, page_kernel: tuple[str, dict[str, str]]
) -> None:
    base, ids = page_kernel
    page, status = open_page(browser, base, ids["paid"])
    assert status == 200
    screenshot(page, "billing-card-paid")
    assert page.get_by_test_id("card").inner_text() == "Visa ending 4242, expires 12/2031"
    assert page.get_by_test_id("update-card").inner_text() == "Update card"
    assert page.get_by_test_id("invoice-payment").all_inner_texts() == [
        "Paid; $10.00 credited back"
    ]
    declined, _ = open_page(browser, base, ids["declined"])
    [said] = declined.get_by_test_id("invoice-payment").all_inner_texts()
    assert said.startswith("Failed: Your card was declined (")


def test_update_card_sends_the_owner_to_stripe_checkout(
    browser: Browser, page_kernel: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    base, ids = page_kernel
    page, _ = open_page(browser, base, ids["paid"])
    reached = to_stripe(page, "update-card")
    assert len(reached) == 1
    assert reached[0].startswith("https://checkout.stripe.com/c/pay/cs_test_")
    back, _ = open_page(browser, base, ids["paid"], path="/app/billing?card=added")
    assert "saved with Stripe" in back.get_by_test_id("card-notice").inner_text()


def test_pay_now_sends_the_owner_of_a_declined_invoice_to_stripe_checkout(
    browser: Browser, page_kernel: tuple[str, dict[str, str]]
) -> None:
    base, ids = page_kernel
    paid, _ = open_page(browser, base, ids["paid"])
    assert paid.get_by_test_id("pay-now").count() == 0  # nothing to pay
    page, _ = open_page(browser, base, ids["declined"])
    reached = to_stripe(page, "pay-now")
    assert len(reached) == 1
    assert reached[0].startswith("https://checkout.stripe.com/c/pay/cs_test_")
    back, _ = open_page(browser, base, ids["declined"], path="/app/billing?paid=invoice")
    screenshot(back, "billing-pay-now-open")
    assert "made on Stripe's page" in back.get_by_test_id("paid-notice").inner_text()
    assert (
        back.get_by_test_id("invoice-payment")
        .inner_text()
        .startswith("Being paid on Stripe's page")
    )
