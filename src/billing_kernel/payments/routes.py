"""`/api/v1/payments/stripe/webhook`: Stripe's events, verified and applied once; and the
current org's card and each invoice's collection attempts
(`/api/v1/billing/org/payment-method`, `/api/v1/billing/org/invoices/{id}/payments`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request

from billing_kernel.payments.schemas import (
    CardOut,
    PaymentListOut,
    PaymentMethodOut,
    PaymentOut,
    WebhookOut,
)
from billing_kernel.web.deps import AdminAccess, KernelDep
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

InvoiceId = Annotated[
    str, Path(max_length=40, pattern=r"^[A-Za-z0-9_-]+$", description="The invoice's id.")
]


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
