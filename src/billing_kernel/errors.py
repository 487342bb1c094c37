"""The kernel's one error model.

Every failure a caller can cause is a `BillingError` subclass with a stable machine-readable
`code` and the HTTP status it maps to. The HTTP layer renders them as RFC 9457 problem details;
the CLI prints `message`. This module imports only the standard library, so the pure domain may
raise these too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar


class BillingError(Exception):
    """Base of every error the kernel reports to its callers."""

    status: ClassVar[int] = 400
    code: ClassVar[str] = "billing_error"
    title: ClassVar[str] = "Billing request failed"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details: Mapping[str, Any] = details


class InvalidInput(BillingError):
    """A value is malformed or out of range; nothing was written."""

    status = 422
    code = "invalid_input"
    title = "Invalid input"


class UrlNotAllowed(InvalidInput):
    """An outbound URL (a webhook, a Slack incoming webhook) points where the kernel does
    not send: a host that does not resolve, or a loopback, private, link-local, multicast,
    unspecified or reserved address; nothing was written."""

    code = "url_not_allowed"
    title = "URL not allowed"


class NotFound(BillingError):
    """Base for things that do not exist (or that the caller may not see)."""

    status = 404
    code = "not_found"
    title = "Not found"


class OrgNotFound(NotFound):
    code = "org_not_found"
    title = "Organization not found"


class UnknownMetric(NotFound):
    """The metric is not in the deployment's metric catalogue."""

    code = "unknown_metric"
    title = "Unknown metric"


class UnknownEvent(UnknownMetric):
    """No metric counts events of that name."""

    code = "unknown_event"
    title = "Unknown event"


class PlanNotFound(NotFound):
    code = "plan_not_found"
    title = "Plan not found"


class MetricNotInPlan(NotFound):
    """The plan does not name the metric: it gives none of it (`plans.rules.not_included`)."""

    code = "metric_not_in_plan"
    title = "Metric not in plan"


class MemberNotFound(NotFound):
    code = "member_not_found"
    title = "Member not found"


class AliasTaken(BillingError):
    """An org alias is another org's alias or id."""

    status = 409
    code = "alias_taken"
    title = "Alias names another org"


class PlanInactive(BillingError):
    """The plan exists but is no longer offered."""

    status = 409
    code = "plan_inactive"
    title = "Plan is not active"


class PlanExists(BillingError):
    """A plan with the slug exists: plans are created once (their terms change by new
    versions)."""

    status = 409
    code = "plan_exists"
    title = "Plan already exists"


class PlanIsDefault(BillingError):
    """New orgs start on this plan: it cannot be withdrawn."""

    status = 409
    code = "plan_is_default"
    title = "Plan is the default"


class PlanNotOffered(BillingError):
    """The plan is private: the operator assigns it, and an org may not move to it itself."""

    status = 409
    code = "plan_not_offered"
    title = "Plan is not offered"


class NoDefaultPlan(BillingError):
    """No plan is marked as the one new orgs start on, so an org cannot be created without
    naming its plan; nothing was written."""

    status = 409
    code = "no_default_plan"
    title = "No default plan"


class IdempotencyConflict(BillingError):
    """An idempotency key was reused with a different payload; nothing was written."""

    status = 409
    code = "idempotency_conflict"
    title = "Idempotency key reused with a different payload"


class ReservationNotFound(NotFound):
    code = "reservation_not_found"
    title = "Reservation not found"


class EndpointNotFound(NotFound):
    code = "endpoint_not_found"
    title = "Webhook endpoint not found"


class DeliveryNotFound(NotFound):
    code = "delivery_not_found"
    title = "Delivery not found"


class InvoiceNotFound(NotFound):
    code = "invoice_not_found"
    title = "Invoice not found"


class CreditNoteNotFound(NotFound):
    code = "credit_note_not_found"
    title = "Credit note not found"


class CouponNotFound(NotFound):
    code = "coupon_not_found"
    title = "Coupon not found"


class CouponExists(BillingError):
    """A coupon with this code exists with other terms; nothing was written."""

    status = 409
    code = "coupon_exists"
    title = "Coupon exists"


class CouponNotApplicable(BillingError):
    """The coupon may not be applied to the org (archived, past its last day, at its limit
    of orgs, in another currency, or applied to it before); nothing was written."""

    status = 409
    code = "coupon_not_applicable"
    title = "Coupon not applicable"


class InvoiceNotOpen(BillingError):
    """The invoice is void (or, for a change only an open one allows, no longer open), and
    cannot be changed this way; nothing was written."""

    status = 409
    code = "invoice_not_open"
    title = "Invoice not open"


class InvoicePaid(InvoiceNotOpen):
    """The invoice is paid: a paid invoice is never voided (it is corrected by a credit
    note); nothing was written."""

    code = "invoice_paid"
    title = "Invoice paid"


class EventsForgotten(BillingError):
    """The invoice bills usage of a month whose events are forgotten past
    BILLING_EVENT_RETENTION_MONTHS: a correction could not be recomputed from them, so it is
    not voided; nothing was written."""

    status = 409
    code = "events_forgotten"
    title = "Events forgotten"


class NothingToCredit(BillingError):
    """The invoice is credited in full already (also when another credit note won a race
    with this one); nothing was written."""

    status = 409
    code = "invoice_credited"
    title = "Nothing left to credit"


class NotRefundable(BillingError):
    """The invoice was not paid through Stripe (or the deployment does not collect through
    it): its money cannot be given back by the kernel; nothing was written."""

    status = 409
    code = "not_refundable"
    title = "Not refundable here"


class AmountOutOfBounds(BillingError):
    """An invoice would come to an amount beyond what the kernel stores (see
    `common.money.MAX_AMOUNT`); nothing was written."""

    status = 422
    code = "amount_out_of_bounds"
    title = "Amount out of bounds"


class PeriodNotClosed(BillingError):
    """The billing period has not closed yet (it ends, then late events still count in it
    for BILLING_LATE_EVENT_GRACE_HOURS); nothing was written."""

    status = 409
    code = "period_not_closed"
    title = "Billing period not closed yet"


class CurrencyChange(BillingError):
    """The org is billed in its plan's currency this period and the plan asked for is in
    another; nothing was written."""

    status = 409
    code = "currency_change"
    title = "Plan in another currency"


class PreviewStale(BillingError):
    """A plan change was confirmed with a preview's moment that no longer holds; nothing was
    written: preview it again."""

    status = 409
    code = "preview_stale"
    title = "Preview no longer holds"


class ReservationSettled(BillingError):
    """The reservation was settled otherwise (committed, released or refused) and cannot
    be settled this way; nothing was written."""

    status = 409
    code = "reservation_settled"
    title = "Reservation already settled"


class Unauthenticated(BillingError):
    """No credentials, or credentials that do not verify."""

    status = 401
    code = "unauthenticated"
    title = "Authentication required"


class Forbidden(BillingError):
    """The caller is known but may not do this."""

    status = 403
    code = "forbidden"
    title = "Not allowed"


class PaymentsOff(NotFound):
    """The deployment does not collect through Stripe (no BILLING_STRIPE_API_KEY or
    BILLING_STRIPE_WEBHOOK_SECRET)."""

    code = "payments_off"
    title = "Payments through Stripe are not configured"


class PaymentUnderWay(BillingError):
    """A payment of the invoice is being made (the card on file being charged, or Stripe
    deciding), or it is paid: no pay-now page is opened beside it; nothing was written."""

    status = 409
    code = "payment_under_way"
    title = "Payment under way"


class StripeNotAnswering(BillingError):
    """Stripe could not be reached, or failed on its side; nothing is known to have been
    made there, and asking again is safe (the same key)."""

    status = 503
    code = "stripe_unavailable"
    title = "Stripe unavailable"


class StripeRefusedCall(BillingError):
    """Stripe refused the kernel's call (a configuration or account matter: the message
    says Stripe's words)."""

    status = 502
    code = "stripe_refused"
    title = "Stripe refused"


class InvalidSignature(BillingError):
    """A webhook's signature does not verify (wrong secret, altered body, too old): nothing
    was stored."""

    status = 400
    code = "invalid_signature"
    title = "Invalid signature"


class SandboxOff(Forbidden):
    """The sandbox clock moves only in dev mode."""

    code = "sandbox_off"
    title = "Sandbox clock off"


class OrgAmbiguous(BillingError):
    """The request does not say which org it is about, and the caller has several (or none)."""

    status = 400
    code = "org_required"
    title = "Which org?"


class ApiKeyNotFound(NotFound):
    code = "api_key_not_found"
    title = "API key not found"


class DatabaseUnavailable(BillingError):
    """The database could not serve the request just now (no connection, too many clients,
    a lock wait that timed out, a serialization failure); nothing was written. Retrying after
    a moment is safe: usage is counted once per idempotency key."""

    status = 503
    code = "database_unavailable"
    title = "Database unavailable"


class ConfigurationError(BillingError):
    """The kernel's settings are unsafe or inconsistent; it will not start."""

    status = 500
    code = "configuration_error"
    title = "Configuration error"
