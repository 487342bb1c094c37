"""The billing page in a real browser (Debian's chromium, driven by Playwright) against a real
kernel server on PostgreSQL. Each test saves a screenshot under test-output/screenshots/."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Route, sync_playwright

from billing_kernel.common.periods import BillingPeriod
from billing_kernel.config import Settings
from billing_kernel.db.database import Database
from billing_kernel.kernel import Kernel, utc_now
from billing_kernel.members.rules import MemberRole
from billing_kernel.metrics.rules import Metric
from billing_kernel.orgs.rules import BillingStatus
from billing_kernel.plans.rules import Enforcement, Plan, PlanMetric
from billing_kernel.quota.rules import LimitOverride
from tests.conftest import new_id, own_database_url
from tests.live import KernelServer
from tests.web import user_token

pytestmark = pytest.mark.long

CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS = Path(__file__).parents[2] / "test-output" / "screenshots"
GREEN, YELLOW, RED = "rgb(26, 127, 55)", "rgb(212, 167, 44)", "rgb(207, 34, 46)"


THIS_MONTH = BillingPeriod.containing(utc_now())
VETERAN_SINCE = THIS_MONTH.previous().previous().previous()


async def seed(url: str) -> dict[str, str]:
    """Org A on Starter at 50 % of tokens, 85 % of runs, 120 % of seats; org B elsewhere,
    its runs in a grace; org C created three months ago, its runs blocked."""
    database = Database(url)
    kernel = Kernel(database, Settings(database_url=url))
    then = VETERAN_SINCE.start + timedelta(days=9)
    earlier = Kernel(database, Settings(database_url=url), clock=lambda: then)
    ids = {
        "a": new_id("org-a"),
        "b": new_id("org-b"),
        "owner": new_id("owner"),
        "member": new_id("member"),
        "both": new_id("both"),
        "c": new_id("org-c"),
        "veteran": new_id("veteran"),
        "d": new_id("org-d"),
        "payer": new_id("payer"),
        "e": new_id("org-e"),
        "upgrader": new_id("upgrader"),
    }
    try:
        await kernel.orgs.create(ids["a"], name="Acme Robotics", plan_slug="starter")
        await kernel.orgs.create(ids["b"], plan_slug="growth")
        await kernel.members.add(ids["a"], ids["owner"], MemberRole.OWNER)
        await kernel.members.add(ids["a"], ids["member"])
        await kernel.members.add(ids["a"], ids["both"])
        await kernel.members.add(ids["b"], ids["both"])
        for n in range(3):
            await kernel.members.add(ids["a"], f"{ids['a']}-seat-{n}")
        await kernel.quota.set_override(ids["a"], "seats", 5)  # 6 members: 120 %
        await kernel.usage.record(ids["a"], "tokens", 500_000, idempotency_key="t")
        await kernel.usage.record(ids["a"], "playbook_runs", 170, idempotency_key="r")
        await kernel.usage.record(ids["b"], "tokens", 4_321_987, idempotency_key="t")
        await kernel.quota.set_override(
            ids["b"], "tokens", LimitOverride(mode=Enforcement.HARD, grace_percent=10)
        )
        await earlier.orgs.create(ids["c"], plan_slug="starter")
        await earlier.members.add(ids["c"], ids["veteran"], MemberRole.ADMIN)
        await earlier.usage.record(
            ids["c"], "tokens", 123_456, idempotency_key="t", occurred_at=then
        )
        # Org b's runs are in their grace; org c's runs are blocked.
        runs = LimitOverride(100, sets_included=True, mode=Enforcement.HARD, grace_percent=10)
        await kernel.quota.set_override(ids["b"], "playbook_runs", runs)
        await kernel.usage.record(ids["b"], "playbook_runs", 105, idempotency_key="r")
        blocked = LimitOverride(10, sets_included=True, mode=Enforcement.HARD)
        await kernel.quota.set_override(ids["c"], "playbook_runs", blocked)
        await kernel.usage.record(ids["c"], "playbook_runs", 10, idempotency_key="r")
        # Org d has paid since its first month, which is invoiced.
        await earlier.orgs.create(ids["d"], plan_slug="starter")
        await earlier.subscriptions.set_status(ids["d"], BillingStatus.ACTIVE)
        await earlier.members.add(ids["d"], ids["payer"], MemberRole.OWNER)
        await earlier.usage.record(ids["d"], "tokens", 1_250_000, idempotency_key="t")
        await kernel.invoices.close(ids["d"], VETERAN_SINCE)
        # Org e pays for Starter, and will change plan.
        await kernel.orgs.create(ids["e"], plan_slug="starter")
        await kernel.subscriptions.set_status(ids["e"], BillingStatus.ACTIVE)
        await kernel.members.add(ids["e"], ids["upgrader"], MemberRole.OWNER)
    finally:
        await database.dispose()
    return ids


@pytest.fixture(scope="module")
def kernel(postgres_url: str) -> Iterator[tuple[str, dict[str, str]]]:
    # Playwright's sync API keeps an event loop on this thread: seed from another one.
    with ThreadPoolExecutor(1) as worker:
        ids = worker.submit(asyncio.run, seed(postgres_url)).result()
    server = KernelServer(postgres_url).start()
    yield server.url, ids
    server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        message = f"{CHROMIUM} is missing (apt-get install chromium)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield launched
        launched.close()


def open_page(
    browser: Browser, base: str, user_id: str | None, path: str = "/app/billing", width: int = 1100
) -> tuple[Page, int]:
    context = browser.new_context(viewport={"width": width, "height": 900})
    if user_id is not None:
        context.add_cookies(
            [{"name": "billing-auth-token", "value": user_token(user_id), "url": base}]
        )
    page = context.new_page()
    response = page.goto(base + path)
    assert response is not None
    return page, response.status


def screenshot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / f"{name}.png", full_page=True)


def test_the_page_shows_plan_bars_status_trial_and_chart(
    browser: Browser, kernel: tuple[str, dict[str, str]]
) -> None:
    base, ids = kernel
    page, status = open_page(browser, base, ids["owner"])
    screenshot(page, "billing-owner")
    assert status == 200
    assert page.get_by_test_id("plan").inner_text() == "Starter"
    assert page.get_by_test_id("org-heading").inner_text() == "Billing · Acme Robotics"
    assert "$49.00 per month" in page.content()
    assert page.get_by_test_id("status").inner_text() == "Trial: 30 days left in trial"
    expected = {
        "tokens": ("50.0%", "within limit", GREEN),
        "playbook_runs": ("85.0%", "near limit", YELLOW),
        "seats": ("120.0%", "at or over limit", RED),
    }
    for metric, (percent, word, colour) in expected.items():
        block = page.get_by_test_id(f"metric-{metric}")
        assert block.get_by_test_id("percent").inner_text() == percent
        assert block.get_by_test_id("level").inner_text() == word
        fill = block.locator(".fill")
        assert fill.evaluate("e => getComputedStyle(e).backgroundColor") == colour
        bar = block.get_by_role("progressbar")
        assert percent in (bar.get_attribute("aria-valuetext") or "")
    assert (
        page.get_by_test_id("metric-tokens")
        .get_by_role("progressbar")
        .get_attribute("aria-valuenow")
        == "500000"
    )
    assert "500,000 / 1,000,000 tokens" in page.get_by_test_id("metric-tokens").inner_text()
    chart = page.get_by_test_id("chart-tokens")
    heights = [
        float(h)
        for h in chart.locator("rect").evaluate_all(
            "rects => rects.map(r => r.getAttribute('height'))"
        )
    ]
    assert max(heights) > 0
    assert "Limits are soft" in page.get_by_test_id("limits-note").inner_text()
    # The org was created this month: no months of zeros from before it existed.
    assert page.get_by_test_id("history").inner_text() == (
        f"None yet: {THIS_MONTH.start:%B %Y} is this organization's first month."
    )
    plans = page.get_by_test_id("plans")
    assert "(current)" in plans.inner_text()
    starter = plans.get_by_role("row", name="Starter")
    assert "1M included\nthen $0.02 per 1,000" in starter.inner_text()
    assert "then $15.00 each" in starter.inner_text()
    features = page.get_by_test_id("plan-features")
    assert features.get_by_role("row", name="sso").inner_text().split() == [
        "sso",
        "no",
        "no",
        "yes",
    ]
    assert "support\temail\tpriority\tdedicated" in features.inner_text()
    enterprise = plans.get_by_role("row", name="Enterprise")
    assert (
        "20M included\nthen graduated:\n$0.01 per 1,000 up to 80M\n$0.008 per 1,000 beyond"
        in enterprise.inner_text()
    )


def test_the_period_is_written_once_beside_the_overage_and_the_estimated_bill(
    browser: Browser, kernel: tuple[str, dict[str, str]]
) -> None:
    base, ids = kernel
    page, _ = open_page(browser, base, ids["owner"])
    last = THIS_MONTH.last_day
    assert page.get_by_test_id("period").inner_text() == f"1\N{EN DASH}{last.day} {last:%B %Y}"
    assert (
        page.get_by_test_id("days-left")
        .inner_text()
        .endswith(f"resets on 1 {THIS_MONTH.end:%B %Y}")
    )
    # Six members against five seats: one seat over at $15.00; but the org is in trial, and
    # its upcoming invoice bills nothing yet.
    assert page.get_by_test_id("overage").inner_text() == "$15.00"
    assert page.get_by_test_id("estimated-bill").inner_text() == "$0.00"
    assert page.get_by_test_id("upcoming-invoice").inner_text() == (
        "Nothing to bill so far: time in trial is not billed."
    )
    # Once: no second span elsewhere on the page, and not again in ISO form beside it (the
    # footer's "Figures as of" time is the only ISO date on the page).
    assert page.inner_text("body").count(f"1\N{EN DASH}{last.day} {last:%B}") == 1
    charges = page.get_by_role("region", name="Plan, period and charges").inner_text()
    assert THIS_MONTH.key.isoformat() not in charges
    assert last.isoformat() not in charges


def test_daily_charts_have_dates_on_the_axis_and_each_days_figure(
    browser: Browser, kernel: tuple[str, dict[str, str]]
) -> None:
    base, ids = kernel
    page, _ = open_page(browser, base, ids["owner"])
    chart = page.get_by_test_id("chart-tokens")
    month = f"{THIS_MONTH.start:%b}"
    assert chart.locator(".axis span").all_inner_texts()[:3] == [
        f"1 {month}",
        f"8 {month}",
        f"15 {month}",
    ]
    today = utc_now()
    titles = chart.locator("rect title").all_text_contents()
    assert len(titles) == today.day
    assert f"{today.day} {month}: 500,000" in titles
    assert "busiest day" in chart.locator("figcaption").inner_text()
    # The same figures as a table, for readers who cannot see the bars.
    table = page.get_by_test_id("daily-table")
    table.locator("summary").click()
    screenshot(page, "billing-daily-table")
    today_row = table.locator("tbody tr").filter(
        has=page.get_by_role("rowheader", name=f"{today.day} {month}", exact=True)
    )
    assert today_row.locator("td").all_inner_texts() == ["500,000", "170"]


def test_previous_months_start_at_the_orgs_first_month(
    browser: Browser, kernel: tuple[str, dict[str, str]]
) -> None:
    base, ids = kernel
    page, _ = open_page(browser, base, ids["veteran"])
    screenshot(page, "billing-veteran")
    # Its 30-day trial is over and nothing made it active yet.
    assert page.get_by_test_id("status").inner_text().startswith("Trial: ended ")
    rows = page.get_by_test_id("history").locator("tbody tr")
    assert rows.count() == 3  # created three months ago: those months, not six
    oldest = rows.nth(2).locator("td").all_inner_texts()
    assert oldest[0] == f"{VETERAN_SINCE.start:%B %Y}"
    assert oldest[1] == "123.5K"


def test_an_owner_lists_past_invoices_and_opens_each_as_a_printable_page(
    browser: Browser, kernel: tuple[str, dict[str, str]]
) -> None:
    base, ids = kernel
    page, _ = open_page(browser, base, ids["payer"])
    rows = page.get_by_test_id("invoices").locator("tbody tr")
    assert rows.count() == 1
    number, month, status, total = rows.nth(0).locator("td").all_inner_texts()
    assert (month, status) == (f"{VETERAN_SINCE.start:%B %Y}", "Open")  # paid by hand here
    page.get_by_role("link", name=number).click()
    page.wait_for_url(f"{base}/app/billing/invoices/**")
    screenshot(page, "invoice-printable")
    assert page.get_by_role("heading", level=1).inner_text() == f"Invoice {number}"
    lines = page.get_by_test_id("invoice-lines").inner_text()
    assert "(1,250,000 - 1,000,000) x 0.02 / 1,000 = 5 → 5.00" in lines
    assert page.get_by_test_id("invoice-total").inner_text() == total
    page.get_by_role("link", name="Back to billing").click()
    page.get_by_test_id("upcoming-printable").click()
    assert page.get_by_role("heading", level=1).inner_text() == "Upcoming invoice"
    assert page.get_by_test_id("invoice-org").inner_text() == ids["d"]


def test_an_owner_previews_an_upgrade_confirms_it_and_sees_its_proration(
    browser: Browser, kernel: tuple[str, dict[str, str]]
) -> None:
    base, ids = kernel
    page, _ = open_page(browser, base, ids["upgrader"])
    page.get_by_test_id("change-to-growth").click()
    page.wait_for_url(f"{base}/app/billing/plan?**")
    screenshot(page, "plan-change-preview")
    assert page.get_by_role("heading", level=2).inner_text() == "An upgrade, at once"
    previewed = page.get_by_test_id("change-lines").locator("tbody tr").all_inner_texts()
    assert [row.split("\n")[0].split(" from ")[0] for row in previewed] == [
        "Unused time on Starter",  # one version of each plan: no version tag
        "Remaining time on Growth",
    ]
    formula = page.get_by_test_id("formula").first.inner_text()
    assert " ≈ " in formula  # rounded for people: 4 places, the exact figures folded
    assert len(formula.split(" ≈ ")[1].split(",")[0].split(".")[1]) == 4
    total_after = page.get_by_test_id("total-after").inner_text()
    page.get_by_test_id("confirm-change").click()
    page.wait_for_url(f"{base}/app/billing?org=**")
    screenshot(page, "plan-changed")
    assert page.get_by_test_id("plan").inner_text() == "Growth"
    lines = page.get_by_test_id("upcoming-invoice").locator("tbody tr").all_inner_texts()
    assert lines[-2:] == previewed  # exactly the preview's lines, to the cent
    assert page.get_by_test_id("invoice-total").inner_text() == total_after

    # A downgrade waits for the month's end, and can be canceled.
    page.get_by_test_id("change-to-starter").click()
    assert page.get_by_role("heading", level=2).inner_text() == (
        "A downgrade, at the end of the month"
    )
    page.get_by_test_id("confirm-change").click()
    page.wait_for_url(f"{base}/app/billing?org=**")
    notice = page.get_by_test_id("scheduled-change").inner_text()
    assert f"Moving to starter on 1 {THIS_MONTH.end:%B %Y}" in notice
    assert page.get_by_test_id("plan").inner_text() == "Growth"
    page.get_by_test_id("cancel-change").click()
    page.wait_for_url(f"{base}/app/billing?org=**")
    assert page.get_by_test_id("scheduled-change").count() == 0


def test_signing_out_ends_the_session(browser: Browser, kernel: tuple[str, dict[str, str]]) -> None:
    base, ids = kernel
    page, _ = open_page(browser, base, ids["owner"])
    assert page.get_by_test_id("user").inner_text() == f"{ids['owner']} (owner)"
    page.get_by_test_id("sign-out").click()
    page.wait_for_url(base + "/app/signed-out")
    screenshot(page, "billing-after-sign-out")
    assert "You are signed out" in page.inner_text("body")
    assert page.context.cookies() == []
    again = page.goto(base + "/app/billing")
    assert again is not None
    assert again.status == 401


def test_a_member_sees_no_plan_list_and_no_invoice(
    browser: Browser, kernel: tuple[str, dict[str, str]]
) -> None:
    base, ids = kernel
    page, status = open_page(browser, base, ids["member"])
    screenshot(page, "billing-member")
    assert status == 200
    assert page.get_by_test_id("plans").count() == 0
    assert page.get_by_test_id("upcoming-invoice").count() == 0  # money is for admins
    figure = page.get_by_test_id("estimated-bill").inner_text()
    owners, _ = open_page(browser, base, ids["owner"])  # one figure for every member
    assert owners.get_by_test_id("estimated-bill").inner_text() == figure


def test_a_user_of_org_a_never_sees_org_b(
    browser: Browser, kernel: tuple[str, dict[str, str]]
) -> None:
    base, ids = kernel
    page, status = open_page(browser, base, ids["owner"], f"/app/billing?org={ids['b']}")
    screenshot(page, "billing-other-org")
    assert status == 404
    assert "No such organization" in page.content()
    assert "4,321,987" not in page.content()
    assert ids["b"] not in page.inner_text("body")


def test_a_user_in_two_orgs_can_switch(
    browser: Browser, kernel: tuple[str, dict[str, str]]
) -> None:
    base, ids = kernel
    page, _ = open_page(browser, base, ids["both"])
    first = min(ids["a"], ids["b"])
    assert page.locator("[aria-current=page]").inner_text() == first
    page.get_by_role("link", name=max(ids["a"], ids["b"])).click()
    screenshot(page, "billing-switched")
    tokens = page.get_by_test_id("metric-tokens")
    assert "4,321,987" in tokens.inner_text()
    # Org b's own terms make its tokens a hard limit: the page says so, the others' do not.
    assert tokens.get_by_test_id("policy").inner_text() == (
        "Hard limit (10 % grace): use beyond it is refused"
    )
    assert page.get_by_test_id("metric-seats").get_by_test_id("policy").inner_text() == (
        "Soft limit: use beyond it is allowed, and billed as overage"
    )
    assert "Some limits are hard" in page.get_by_test_id("limits-note").inner_text()
    assert tokens.get_by_test_id("limit-state").count() == 0  # within its limit
    grace = page.get_by_test_id("metric-playbook_runs").get_by_test_id("limit-state")
    assert grace.inner_text() == (
        f"In grace. {ids['b']} has used all 100 runs included in Growth this month and may go "
        f"on (5 more runs) by its grace allowance. Usage resets on {next_reset()}."
    )


def next_reset() -> str:
    end = THIS_MONTH.end
    return f"{end.day} {end:%B}"


def test_a_blocked_metric_says_why_in_red(
    browser: Browser, kernel: tuple[str, dict[str, str]]
) -> None:
    base, ids = kernel
    page, _ = open_page(browser, base, ids["veteran"])
    screenshot(page, "billing-blocked")
    runs = page.get_by_test_id("metric-playbook_runs")
    blocked = runs.get_by_test_id("limit-state")
    assert blocked.inner_text() == (
        f"Blocked. {ids['c']} has used all 10 runs included in Starter this month. Usage "
        f"resets on {next_reset()}. Growth includes 1,000 runs."
    )
    assert blocked.evaluate("e => getComputedStyle(e).color") == RED
    assert blocked.get_attribute("role") == "status"
    assert runs.get_by_test_id("policy").inner_text() == "Hard limit: use beyond it is refused"
    assert page.get_by_test_id("metric-tokens").get_by_test_id("limit-state").count() == 0


def test_without_a_token_the_page_says_so(
    browser: Browser, kernel: tuple[str, dict[str, str]]
) -> None:
    base, _ = kernel
    page, status = open_page(browser, base, None)
    screenshot(page, "billing-signed-out")
    assert status == 401
    assert "Sign in to see billing" in page.content()
    assert "Traceback" not in page.content()


def test_it_fits_a_phone(browser: Browser, kernel: tuple[str, dict[str, str]]) -> None:
    base, ids = kernel
    page, _ = open_page(browser, base, ids["owner"], width=390)
    screenshot(page, "billing-phone")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390


def test_the_interactive_docs_work_with_no_network_beyond_the_kernel(
    browser: Browser, kernel: tuple[str, dict[str, str]]
) -> None:
    """/docs loads Swagger UI's script and styles from the kernel itself: with every request
    to any other host refused, the page still lists every operation."""
    base, _ = kernel
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    elsewhere: list[str] = []

    def only_the_kernel(route: Route) -> None:
        if route.request.url.startswith(base):
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort("internetdisconnected")

    context.route("**/*", only_the_kernel)
    page = context.new_page()
    response = page.goto(base + "/docs")
    assert response is not None
    assert response.status == 200
    page.wait_for_selector(".opblock", timeout=15_000)
    screenshot(page, "api-docs")
    spec = page.request.get(base + "/openapi.json").json()
    operations = {
        operation["operationId"]
        for methods in spec["paths"].values()
        for operation in methods.values()
    }
    shown = set(page.locator(".opblock").evaluate_all("els => els.map(e => e.id)"))
    assert len(shown) == len(operations) >= 12
    for operation in operations:
        assert any(element_id.endswith(operation) for element_id in shown), operation
    assert elsewhere == []
    context.close()


def test_alerts_show_as_notices_a_member_can_dismiss_and_in_the_history(
    browser: Browser, kernel: tuple[str, dict[str, str]]
) -> None:
    base, ids = kernel
    page, _ = open_page(browser, base, ids["veteran"])  # org c: runs at 10 of 10
    notices = page.get_by_test_id("notice")
    assert notices.count() == 2
    texts = [notices.nth(i).inner_text() for i in range(2)]
    assert texts[0].startswith("Limit reached. Playbook runs reached 100 % of the limit on ")
    assert texts[0].split("\n")[0].endswith(": 10 of 10 used.")
    assert texts[1].startswith("Alert. Playbook runs reached 80 % of the limit on ")
    red = notices.nth(0).evaluate("e => getComputedStyle(e).borderLeftColor")
    assert red == RED
    history = page.get_by_test_id("alert-history").locator("li")
    assert [history.nth(i).inner_text().split(" ", 2)[2] for i in range(2)] == [
        "Playbook runs reached 100 %: 10 of 10 used.",
        "Playbook runs reached 80 %: 10 of 10 used.",
    ]
    screenshot(page, "billing-alerts")
    notices.nth(0).get_by_test_id("dismiss").click()
    page.wait_for_url(f"{base}/app/billing?org={ids['c']}")
    assert page.get_by_test_id("notice").count() == 1
    assert "80 %" in page.get_by_test_id("notice").inner_text()
    assert page.get_by_test_id("alert-history").locator("li").count() == 2  # still listed
    page.context.close()
    again, _ = open_page(browser, base, ids["veteran"])  # dismissed for good
    assert again.get_by_test_id("notice").count() == 1
    again.context.close()


def test_a_dismissal_from_another_site_or_for_another_org_is_refused(
    browser: Browser, kernel: tuple[str, dict[str, str]]
) -> None:
    base, ids = kernel
    page, _ = open_page(browser, base, ids["owner"])  # org a's owner
    period = THIS_MONTH.label
    for org, origin, status in ((ids["c"], base, 404), (ids["a"], "https://evil.example", 403)):
        answer = page.request.post(
            f"{base}/app/billing/alerts/dismiss?org={org}&metric=seats&threshold=100%25"
            f"&period={period}",
            headers={"Origin": origin},
        )
        assert answer.status == status, (org, origin)
    page.context.close()
    page, _ = open_page(browser, base, ids["owner"])
    assert "Seats reached 100 %" in page.get_by_test_id("notices").inner_text()
    page.context.close()


async def seed_wide(url: str) -> dict[str, str]:
    """Ten metrics, a public plan naming them all, and an org on it that used each, with a
    plan change that puts prorated lines on its invoice: the widest page there is."""
    database = Database(url)
    kernel = Kernel(database, Settings(database_url=url))
    ids = {"org": new_id("wide"), "owner": new_id("owner")}
    try:
        extra = [Metric(f"metric_{n}", f"Wide metric number {n}", "units") for n in range(7)]
        for metric in extra:
            await kernel.metrics.define(metric)
        keys = [m.key for m in await kernel.metrics.catalogue()]
        terms = {key: PlanMetric(key, 1_000_000, Decimal("0.0125"), 1000) for key in keys}
        wide = Plan("wide", "Wide Team Plan", "USD", Decimal("1234.00"), metrics=terms)
        await kernel.plans.create(wide)
        await kernel.orgs.create(
            ids["org"], name="Acme Robotics International", plan_slug="starter"
        )
        await kernel.subscriptions.set_status(ids["org"], BillingStatus.ACTIVE)
        await kernel.members.add(ids["org"], ids["owner"], MemberRole.OWNER)
        await kernel.plan_changes.change(ids["org"], "wide")  # prorated lines
        for key in keys:
            if key != "seats":
                await kernel.usage.record(ids["org"], key, 1_234_567, idempotency_key=key)
    finally:
        await database.dispose()
    return ids


@pytest.mark.parametrize("width", [390, 1280])
def test_the_page_fits_a_phone_and_a_laptop_with_ten_metrics(
    browser: Browser, tmp_path: Path, width: int
) -> None:
    # Playwright's sync API keeps an event loop on this thread: the database is made,
    # seeded and dropped on another.
    with ThreadPoolExecutor(1) as worker:
        scratch = own_database_url("postgres", tmp_path)
        url = worker.submit(scratch.__enter__).result()
        ids = worker.submit(asyncio.run, seed_wide(url)).result()
        server = KernelServer(url).start()
        try:
            page, status = open_page(browser, server.url, ids["owner"], width=width)
            screenshot(page, f"billing-wide-{width}")
            assert status == 200
            overflow = page.evaluate(
                "document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            assert overflow == 0, f"the page scrolls sideways by {overflow} px"
            # What a reader needs is in view without scrolling a table: the amounts, the
            # total, and the way to another plan.
            for found in (
                page.get_by_test_id("invoice-total"),
                page.locator("[data-testid=invoice-line] td.amount").first,
                page.get_by_test_id("change-to-growth"),
            ):
                box = found.bounding_box()
                assert box is not None
                assert box["x"] >= 0
                assert box["x"] + box["width"] <= width
        finally:
            server.stop()
            worker.submit(scratch.__exit__, None, None, None).result()
