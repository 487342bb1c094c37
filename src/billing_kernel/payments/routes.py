"""`/api/v1/payments/stripe/webhook`: Stripe's events, verified and applied once."""

from __future__ import annotations

from fastapi import APIRouter, Request

from billing_kernel.payments.schemas import WebhookOut
from billing_kernel.web.deps import KernelDep
from billing_kernel.web.problems import problem_responses

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
