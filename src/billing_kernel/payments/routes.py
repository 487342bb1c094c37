"""`/api/v1/payments/stripe/webhook`: Stripe's events, verified and applied once; and the
current org's card, each invoice's collection attempts and its pay-now page
(`/api/v1/billing/org/payment-method`, `/api/v1/billing/org/invoices/{id}/payments`,
`.../pay`)."""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Request

from billing_kernel.errors import StripeNotAnswering, StripeRefusedCall
from billing_kernel.payments.gateway import StripeRefused, StripeUnavailable
from billing_kernel.payments.schemas import (
    CardOut,
    PaymentListOut,
    PaymentMethodOut,
    PaymentOut,
    PayNowIn,
    PayNowOut,
    WebhookOut,
)
from billing_kernel.web.deps import AdminAccess, InvoiceId, KernelDep, SettingsDep
from billing_kernel.web.problems import problem_responses
from billing_kernel.web.routers import billing_router

router = APIRouter(prefix="/api/v1/payments", tags=["payments"])


@router.post(
    "/stripe/webhook",
    operation_id="receiveStripeWebhook",
    summary="Stripe's webhook endpoint",
    responses=problem_responses(400, 404),
)
async def stripe_webhook(request: Request, kernel: KernelDep) -> WebhookOut:
    """Where the deployment's Stripe webhook endpoint points (docs/payments.md). No key:
    the `Stripe-Signature` header, checked with BILLING_STRIPE_WEBHOOK_SECRET, is the
    caller's proof (400 `invalid_signature` otherwise, nothing stored). Each event is
    applied once for ever, by its id, in whatever order events come: a PaymentIntent's
    success pays its invoice, a failure makes the org past due, a late failure after a
    success changes nothing. 404 `payments_off` where the deployment does not collect
    through Stripe."""
    payload = await request.body()
    outcome = await kernel.payments.receive(payload, request.headers.get("stripe-signature"))
    return WebhookOut(outcome=outcome)  # type: ignore[arg-type]


billing = billing_router()


@billing.get(
    "/org/payment-method",
    operation_id="getPaymentMethod",
    summary="The current org's card on file",
    responses=problem_responses(400, 403, 404),
)
async def payment_method(access: AdminAccess) -> PaymentMethodOut:
    """Whether the deployment collects through Stripe, and the card invoices are charged to
    (brand, last four, expiry; never its number), as it was when added through Stripe's
    Checkout from the billing page. Owners and admins, or keys with `billing:admin`."""
    payments = access.kernel.payments
    card = await payments.card(access.org_id) if payments.enabled else None
    return PaymentMethodOut(
        collecting=payments.enabled, card=None if card is None else CardOut.of(card)
    )


@billing.get(
    "/org/invoices/{invoice_id}/payments",
    operation_id="listInvoicePayments",
    summary="The attempts to collect one of the current org's invoices",
    responses=problem_responses(400, 403, 404),
)
async def invoice_payments(invoice_id: InvoiceId, access: AdminAccess) -> PaymentListOut:
    """Each attempt to collect the invoice through Stripe, first to last: its status, the
    PaymentIntent, and for a failure Stripe's code and words. 404 for an invoice that is not
    the org's. Owners and admins, or keys with `billing:admin`."""
    kernel = access.kernel
    invoice = await kernel.invoices.get(invoice_id, access.org_id)
    attempts = await kernel.payments.attempts(invoice.invoice_id)
    return PaymentListOut(data=[PaymentOut.of(a) for a in attempts])


@billing.post(
    "/org/invoices/{invoice_id}/pay",
    operation_id="createPayNowPage",
    summary="A page where the payer pays one of the current org's open invoices at once",
    responses=problem_responses(400, 403, 404, 409, 422, 502, 503),
)
async def pay_now(
    invoice_id: InvoiceId,
    body: PayNowIn,
    access: AdminAccess,
    kernel: KernelDep,
    settings: SettingsDep,
) -> PayNowOut:
    """Stripe's Checkout page (payment mode) for the invoice's exact amount, to send the
    payer to: the "Pay now" of the billing page, for products that show billing in their
    own pages. The page takes payment for an hour; while it does, the card on file is not
    charged for the invoice, and asking again hands out the same page (a new one once it
    is near its end). Paid there, the invoice is paid by that attempt (Stripe's webhook);
    left unpaid, the attempt ends `canceled`, nothing charged. 409 `payment_under_way`
    while a charge of the invoice is being made or decided, or once it is paid;
    `invoice_not_open` for a void one; 404 `payments_off` where the deployment does not
    collect through Stripe; 503 `stripe_unavailable` (ask again: the same page is made).
    Owners and admins, or keys with `billing:admin`."""
    # The deployment's kernel, not the user's: the attempt is the kernel's own record to
    # write (row-level security lets a user read payments, never write them).
    back = body.return_url or (
        f"{settings.public_url.rstrip('/')}/app/billing?org={quote(access.org_id)}"
    )
    try:
        page = await kernel.payments.pay_now(access.org_id, invoice_id, back)
    except StripeUnavailable as exc:
        raise StripeNotAnswering(f"Stripe could not make the page: {exc}") from None
    except StripeRefused as exc:
        raise StripeRefusedCall(str(exc)) from None
    return PayNowOut(url=page.url, attempt=PaymentOut.of(page.payment))
