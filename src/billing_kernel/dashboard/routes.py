"""GET /app/billing: the signed-in user's billing page. One service call, one render.
POST /app/logout: sign out of it."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path as FilePath
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.security import HTTPAuthorizationCredentials
from fastapi.templating import Jinja2Templates

from billing_kernel.alerts.rules import AlertState
from billing_kernel.auth.rules import User
from billing_kernel.common.periods import BillingPeriod
from billing_kernel.common.validation import ID_PATTERN_TEXT, MAX_ID_LENGTH
from billing_kernel.config import Settings
from billing_kernel.dashboard import view
from billing_kernel.db.unit_of_work import ReadOnlyUnit, UnitOfWork
from billing_kernel.discounts.rules import Redemption
from billing_kernel.errors import BillingError, Forbidden, OrgNotFound, Unauthenticated
from billing_kernel.events.rules import Event
from billing_kernel.invoices.rules import InvoiceDraft, StoredInvoice
from billing_kernel.kernel import Kernel
from billing_kernel.members.rules import ADMIN_ROLES
from billing_kernel.payments.gateway import StripeRefused, StripeUnavailable
from billing_kernel.payments.rules import Card, Payment
from billing_kernel.subscriptions.rules import ScheduledChange
from billing_kernel.summary.rules import OrgDashboard
from billing_kernel.web.deps import (
    InvoiceId,
    KernelDep,
    SettingsDep,
    bearer,
    get_principal,
    user_org,
)
from billing_kernel.web.guards import require_same_origin
from billing_kernel.web.schemas import MONTH_PATTERN

router = APIRouter(include_in_schema=False)
HISTORY_LENGTH = 10
"""How many of the org's latest alerts the page lists."""
PAST_INVOICES = 12
"""How many of the org's latest invoices the page lists."""


def _sandbox(request: Request) -> dict[str, object]:
    """Every page says when the kernel's clock is the sandbox's, not real time."""
    sandbox = request.app.state.kernel.sandbox
    return {"sandbox_now": sandbox.state().now if sandbox.moved else None}


templates = Jinja2Templates(
    directory=FilePath(__file__).parent / "templates", context_processors=[_sandbox]
)
templates.env.globals.update(
    level=view.level,
    limit_state=view.limit_state,
    policy_text=view.policy_text,
    count=view.count,
    compact=view.compact,
    money=view.money,
    invoice_rows=view.invoice_rows,
    shown_and_folded=view.shown_and_folded,
    period_span=view.period_span,
    day_month=view.day_month,
    long_day=view.long_day,
    month_name=view.month_name,
    overage_lines=view.overage_lines,
    split_lines=view.split_lines,
    feature_rows=view.feature_rows,
    bar_width=view.bar_width,
    chart_bars=view.chart_bars,
    axis_ticks=view.axis_ticks,
    CHART_WIDTH=view.CHART_WIDTH,
    CHART_HEIGHT=view.CHART_HEIGHT,
)


def _no_such_org(request: Request) -> HTMLResponse:
    """The same answer for an org that does not exist and one the user is not in."""
    return _message(
        request,
        404,
        "No such organization",
        "There is no organization by that name that you belong to.",
    )


def _message(
    request: Request, status: int, title: str, text: str, dev_hint: bool = False
) -> HTMLResponse:
    return templates.TemplateResponse(
        request,
        "message.html",
        {
            "title": title,
            "text": text,
            "dev_hint": dev_hint,
            "cookie": request.app.state.settings.auth_cookie,
        },
        status_code=status,
    )


@dataclass(frozen=True)
class _PageReads:
    """What the billing page shows of an org, read in one unit of work."""

    dashboard: OrgDashboard
    upcoming: InvoiceDraft
    org_name: str
    past: list[StoredInvoice]
    scheduled: ScheduledChange | None
    card: Card | None
    attempts: dict[str, list[Payment]]
    states: list[AlertState]
    history: list[tuple[int, Event]]
    coupons: list[Redemption]


async def _read_page(as_user: Kernel, org_id: str, admin: bool, uow: UnitOfWork) -> _PageReads:
    """The page's reads; invoices, the scheduled change and the card only for `admin`."""
    dashboard = await as_user.summary.dashboard(org_id, include_plans=admin, uow=uow)
    past = (
        await as_user.invoices.list_invoices(org_id, limit=PAST_INVOICES, uow=uow) if admin else []
    )
    return _PageReads(
        dashboard=dashboard,
        upcoming=await as_user.invoices.upcoming(org_id, uow, summary=dashboard.summary),
        org_name=(await as_user.orgs.get(org_id, uow)).name or org_id,
        past=past,
        scheduled=await as_user.subscriptions.scheduled_change(org_id, uow) if admin else None,
        card=await as_user.payments.card(org_id, uow) if admin else None,
        attempts=await as_user.payments.attempts_of([i.invoice_id for i in past], uow),
        states=await as_user.alerts.states(org_id, dashboard.summary.period, uow),
        history=await as_user.events.events(
            org_id=org_id,
            operators_too=False,
            types=view.ALERT_TYPES,
            limit=HISTORY_LENGTH,
            uow=uow,
        ),
        coupons=await as_user.discounts.redemptions(org_id, uow) if admin else [],
    )


@router.get("/app/billing", response_class=HTMLResponse)
async def billing_page(
    request: Request,
    kernel: KernelDep,
    settings: SettingsDep,
    org: Annotated[str | None, Query(max_length=MAX_ID_LENGTH, pattern=ID_PATTERN_TEXT)] = None,
) -> Response:
    credentials: HTTPAuthorizationCredentials | None = await bearer(request)
    try:
        caller = await get_principal(request, credentials)
    except Unauthenticated as exc:
        return _message(
            request,
            401,
            "Sign in to see billing",
            f"You are not signed in ({exc.message}).",
            dev_hint=settings.dev_mode,
        )
    if not isinstance(caller, User):
        return _message(
            request,
            403,
            "Not for API keys",
            "The billing page is for signed-in people, not service keys.",
        )
    try:
        memberships = await kernel.members.memberships(caller.user_id)
        # Several orgs and none chosen: the first, with a switcher on the page.
        org_id, role = user_org(memberships, org or min(memberships, default=None))
        as_user, admin = kernel.for_user(caller.user_id), role in ADMIN_ROLES
        page: _PageReads | None = None
        if not _wrote_lately(request):  # else the user's own change must show: the primary
            try:
                replica = as_user.from_replica()
                async with replica.reading() as uow:  # one transaction for the page's reads
                    page = await _read_page(replica, org_id, admin, uow)
            except ReadOnlyUnit:  # the org's state is to be seeded or changed first
                page = None
        if page is None:
            async with as_user.transaction() as uow:
                page = await _read_page(as_user, org_id, admin, uow)
    except OrgNotFound:
        return _no_such_org(request)
    except BillingError as exc:
        return _message(request, exc.status, exc.title, exc.message)
    dashboard, past, attempts, card = page.dashboard, page.past, page.attempts, page.card
    period = dashboard.summary.period
    names = {line.metric.key: line.metric.name for line in dashboard.summary.usage}
    context: dict[str, Any] = {
        "notices": view.notices(page.states, names, period),
        "alert_history": [(event, view.event_text(event, names)) for _, event in page.history],
        "dashboard": dashboard,
        "summary": dashboard.summary,
        "invoice": page.upcoming if admin else None,  # its lines: for owners and admins
        "discounts": [view.discount_text(r, dashboard.summary.generated_at) for r in page.coupons],
        "estimated_total": page.upcoming.total,  # one figure for every member
        "org_name": page.org_name,
        "past_invoices": past,
        "payments": [
            view.payment_state(
                i.status, attempts.get(i.invoice_id, []), card is not None, kernel.payments.enabled
            )
            for i in past
        ],
        "pay_now": [
            kernel.payments.offers_pay_now(
                i.status, i.total, attempts.get(i.invoice_id, []), has_card=card is not None
            )
            for i in past
        ],
        "paid_notice": request.query_params.get("paid"),
        "collecting": kernel.payments.enabled,
        "card": None
        if card is None
        else view.card_text(card.brand, card.last4, card.exp_month, card.exp_year),
        "card_notice": request.query_params.get("card"),
        "scheduled": page.scheduled,
        "role": role,
        "orgs": sorted(memberships),
        "user_id": caller.user_id,
    }
    return templates.TemplateResponse(request, "billing.html", context)


@router.get("/app/billing/invoices/{invoice_id}", response_class=HTMLResponse)
async def invoice_page(
    request: Request,
    kernel: KernelDep,
    invoice_id: InvoiceId,
    org: Annotated[str | None, Query(max_length=MAX_ID_LENGTH, pattern=ID_PATTERN_TEXT)] = None,
) -> Response:
    """One invoice as a printable page (`upcoming`: the draft of this month), for an owner or
    admin of its org."""
    try:
        as_user, org_id = await _admin_of(request, kernel, org)
        if invoice_id == "upcoming":
            context: dict[str, Any] = {"draft": await as_user.invoices.upcoming(org_id)}
        else:
            context = {"stored": await as_user.invoices.get(invoice_id, org_id)}
    except OrgNotFound:
        return _no_such_org(request)
    except BillingError as exc:
        return _message(request, exc.status, exc.title, exc.message)
    return templates.TemplateResponse(request, "invoice.html", {**context, "org_id": org_id})


@router.get("/app/billing/plan", response_class=HTMLResponse)
async def plan_change_page(
    request: Request,
    kernel: KernelDep,
    plan: Annotated[str, Query(max_length=64, pattern=ID_PATTERN_TEXT)],
    org: Annotated[str | None, Query(max_length=MAX_ID_LENGTH, pattern=ID_PATTERN_TEXT)] = None,
) -> Response:
    """What moving the org to `plan` would bill, line by line, with a button to confirm: for
    its owners and admins."""
    try:
        as_user, org_id = await _admin_of(request, kernel, org)
        preview = await as_user.plan_changes.preview(org_id, plan, offered_only=True)
    except OrgNotFound:
        return _no_such_org(request)
    except BillingError as exc:
        return _message(request, exc.status, exc.title, exc.message)
    return templates.TemplateResponse(
        request, "plan_change.html", {"change": preview, "org_id": org_id}
    )


WROTE_COOKIE = "billing-wrote"
"""Set for a while after a change made on the billing page: the page then reads the primary,
so that the change shows even while the read replica catches up."""


def _back_to_page(request: Request, org_id: str) -> Response:
    """The billing page again after a change the user made on it (see WROTE_COOKIE)."""
    response = RedirectResponse(f"/app/billing?org={quote(org_id)}", status_code=303)
    settings: Settings = request.app.state.settings
    if settings.database_replica_url is not None:
        lasting = math.ceil(settings.replica_max_lag_seconds) + 2  # and a probe's interval
        response.set_cookie(
            WROTE_COOKIE, "1", max_age=lasting, path="/app", httponly=True, samesite="lax"
        )
    return response


def _wrote_lately(request: Request) -> bool:
    """Whether the page must show what was just written: a change made on it moments ago,
    or the way back from Stripe's pages (a card added, an invoice paid)."""
    query = request.query_params
    return WROTE_COOKIE in request.cookies or "paid" in query or "card" in query


@router.post("/app/billing/plan")
async def change_plan(
    request: Request,
    kernel: KernelDep,
    plan: Annotated[str, Query(max_length=64, pattern=ID_PATTERN_TEXT)],
    org: Annotated[str, Query(max_length=MAX_ID_LENGTH, pattern=ID_PATTERN_TEXT)],
    at: Annotated[datetime | None, Query()] = None,
    token: Annotated[str | None, Query(pattern=r"^[0-9a-f]{64}$")] = None,
) -> Response:
    """Make the change the preview showed (billed from the preview's moment `at`, exactly
    as its `token` says, to the cent), then show the billing page. Only from the kernel's
    own pages."""
    try:
        require_same_origin(request)
        as_user, org_id = await _admin_of(request, kernel, org)
        await as_user.plan_changes.change(org_id, plan, at=at, token=token, offered_only=True)
    except OrgNotFound:
        return _no_such_org(request)
    except BillingError as exc:
        return _message(request, exc.status, exc.title, exc.message)
    return _back_to_page(request, org_id)


async def _to_stripe(
    request: Request,
    kernel: Kernel,
    settings: Settings,
    org: str,
    what: str,
    page_of: Callable[[str, str], Awaitable[str]],
) -> Response:
    """Send an owner or admin of `org` to the Stripe page `page_of(org_id, back)` makes
    (`what` it is, for the message when it cannot be made), to come back to the billing
    page. Only from the kernel's own pages."""
    try:
        require_same_origin(request)
        _, org_id = await _admin_of(request, kernel, org)
        back = f"{settings.public_url.rstrip('/')}/app/billing?org={quote(org_id)}"
        url = await page_of(org_id, back)
    except OrgNotFound:
        return _no_such_org(request)
    except BillingError as exc:
        return _message(request, exc.status, exc.title, exc.message)
    except StripeUnavailable:
        return _message(
            request, 503, "Stripe is not answering", f"The {what} could not be opened: try again."
        )
    except StripeRefused as exc:
        return _message(request, 502, "Stripe refused", f"The {what} could not be opened: {exc}")
    return RedirectResponse(url, status_code=303)


@router.post("/app/billing/card")
async def add_card(
    request: Request,
    kernel: KernelDep,
    settings: SettingsDep,
    org: Annotated[str, Query(max_length=MAX_ID_LENGTH, pattern=ID_PATTERN_TEXT)],
) -> Response:
    """Send an owner or admin to Stripe's Checkout page (setup mode) to add or replace the
    org's card: the number goes to Stripe, never here. Stripe returns them to the billing
    page. Only from the kernel's own pages."""
    return await _to_stripe(
        request, kernel, settings, org, "card page", kernel.payments.card_setup_url
    )


@router.post("/app/billing/invoices/{invoice_id}/pay")
async def pay_now(
    request: Request,
    kernel: KernelDep,
    settings: SettingsDep,
    invoice_id: InvoiceId,
    org: Annotated[str, Query(max_length=MAX_ID_LENGTH, pattern=ID_PATTERN_TEXT)],
) -> Response:
    """Send an owner or admin to Stripe's Checkout page (payment mode) to pay an open
    invoice of the org at once; Stripe returns them to the billing page. Only from the
    kernel's own pages."""

    async def page_of(org_id: str, back: str) -> str:
        return (await kernel.payments.pay_now(org_id, invoice_id, back)).url

    return await _to_stripe(request, kernel, settings, org, "payment page", page_of)


@router.post("/app/billing/plan/cancel")
async def cancel_plan_change(
    request: Request,
    kernel: KernelDep,
    org: Annotated[str, Query(max_length=MAX_ID_LENGTH, pattern=ID_PATTERN_TEXT)],
) -> Response:
    """Cancel the org's scheduled change, then show the billing page."""
    try:
        require_same_origin(request)
        as_user, org_id = await _admin_of(request, kernel, org)
        await as_user.subscriptions.cancel_scheduled(org_id)
    except OrgNotFound:
        return _no_such_org(request)
    except BillingError as exc:
        return _message(request, exc.status, exc.title, exc.message)
    return _back_to_page(request, org_id)


async def _admin_of(request: Request, kernel: Kernel, org: str | None) -> tuple[Kernel, str]:
    """The kernel acting as the signed-in user, and the org (`org`, or their only one) they
    are an owner or admin of; Unauthenticated, Forbidden or OrgNotFound otherwise."""
    caller = await get_principal(request, await bearer(request))
    if not isinstance(caller, User):
        raise Unauthenticated("the billing page is for signed-in people")
    memberships = await kernel.members.memberships(caller.user_id)
    org_id, role = user_org(memberships, org or min(memberships, default=None))
    if role not in ADMIN_ROLES:
        raise Forbidden("this is for the org's owners and admins")
    return kernel.for_user(caller.user_id), org_id


@router.post("/app/billing/alerts/dismiss")
async def dismiss_alert(
    request: Request,
    kernel: KernelDep,
    org: Annotated[str, Query(max_length=MAX_ID_LENGTH, pattern=ID_PATTERN_TEXT)],
    metric: Annotated[str, Query(max_length=64, pattern=ID_PATTERN_TEXT)],
    threshold: Annotated[str, Query(max_length=24, pattern=ID_PATTERN_TEXT)],
    period: Annotated[str, Query(pattern=MONTH_PATTERN)],
) -> Response:
    """Hide an alert from the org's billing page (for every member), then show the page
    again: a form's POST, the alert named in its action's query. Only from the kernel's
    own pages, for a signed-in member of the org."""
    try:
        require_same_origin(request)
        caller = await get_principal(request, await bearer(request))
        if not isinstance(caller, User):
            raise Unauthenticated("the billing page is for signed-in people")
        user_org(await kernel.members.memberships(caller.user_id), org)
        await kernel.for_user(caller.user_id).alerts.dismiss(
            org, metric, threshold, BillingPeriod.parse(period)
        )
    except BillingError as exc:
        return _message(request, exc.status, exc.title, exc.message)
    return _back_to_page(request, org)


@router.get("/app/login")
async def dev_login(request: Request, settings: SettingsDep, token: str = "") -> Response:
    """Dev mode only: put a token in the auth cookie and go to the billing page (the link
    `make run` prints). Outside dev mode there is no such page."""
    if not settings.dev_mode or not token:
        return _message(request, 404, "Not found", "There is no such page.")
    response = RedirectResponse("/app/billing", status_code=303)
    response.set_cookie(
        settings.auth_cookie, token, max_age=7 * 24 * 3600, **_cookie_options(request, settings)
    )
    return response


@router.post("/app/logout")
async def logout(request: Request, settings: SettingsDep) -> Response:
    """Sign out: forget the auth cookie, then say so. Only from the kernel's own pages (a
    cross-site form cannot sign a user out)."""
    try:
        require_same_origin(request)
    except BillingError as exc:
        return _message(request, exc.status, exc.title, exc.message)
    response = RedirectResponse("/app/signed-out", status_code=303)
    response.delete_cookie(settings.auth_cookie, **_cookie_options(request, settings))
    return response


@router.get("/app/signed-out", response_class=HTMLResponse)
async def signed_out(request: Request, settings: SettingsDep) -> Response:
    return _message(
        request, 200, "Signed out", "You are signed out of billing.", dev_hint=settings.dev_mode
    )


def _cookie_options(request: Request, settings: Settings) -> dict[str, Any]:
    """The auth cookie's attributes, the same when it is set and when it is cleared: never
    readable by script, not sent with cross-site subrequests, Secure over HTTPS or outside
    dev mode."""
    return {
        "httponly": True,
        "samesite": "lax",
        "secure": request.url.scheme == "https" or not settings.dev_mode,
    }
