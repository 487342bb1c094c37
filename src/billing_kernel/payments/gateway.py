"""The kernel's calls to Stripe, through the official `stripe` library, and nothing else of
payments: every call that creates something carries an idempotency key derived from the
kernel's own ids (`rules`), so a retry after a lost answer or a crash replays it; Stripe's
failures are sorted into a decline (an answer: never retried) and an outage (retried later
by the worker). The only module that imports `stripe`, and only once a gateway is made
(a kernel without a Stripe key never loads it)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from billing_kernel.payments.checks import (
    StripeAttempt,
)
from billing_kernel.payments.rules import (
    Card,
    Charge,
    PaymentStatus,
    RefundMade,
    attempt_key,
    checkout_key,
    customer_key,
    from_minor_units,
    minor_units,
    refund_key,
)


class StripeUnavailable(Exception):
    """Stripe could not be reached, or failed on its side (a network error, a timeout, 429,
    5xx), or is still answering the same key (409): nothing is known to have happened, and
    the same call with the same key may be made again."""


class BadSignature(Exception):
    """A webhook whose `Stripe-Signature` does not verify."""


class StripeRefused(Exception):
    """Stripe refused the call as made (4xx other than a card decline): a configuration or
    a kernel error, not retried."""


_STATUSES = {
    "succeeded": PaymentStatus.SUCCEEDED,
    "processing": PaymentStatus.PROCESSING,
    "requires_action": PaymentStatus.FAILED,  # off session: nobody is there to authenticate
    "requires_payment_method": PaymentStatus.FAILED,
    "canceled": PaymentStatus.FAILED,
}


class StripeGateway:
    """Stripe, as the kernel uses it. `api_base` points the library at a Stripe-compatible
    server (tests, staging); None is Stripe itself."""

    def __init__(self, api_key: str, api_base: str | None = None, timeout: float = 30) -> None:
        import stripe  # about 0.2 s: loaded only where payments are configured

        self._stripe = stripe
        addresses: Any = {"api": api_base} if api_base else None
        self._http = stripe.HTTPXClient(timeout=timeout)
        self._client = stripe.StripeClient(
            api_key,
            base_addresses=addresses,
            http_client=self._http,
            max_network_retries=0,  # the worker retries, with the same key, on its schedule
        )

    async def aclose(self) -> None:
        """Close the connections to Stripe."""
        await self._http.close_async()  # type: ignore[no-untyped-call]

    async def create_customer(self, org_id: str, name: str, email: str | None) -> str:
        """A Stripe customer for the org (its name, billing email, `metadata.org_id`): the
        id. The same org again within Stripe's idempotency window (24 hours) gets the same
        customer, not a second one."""
        params: dict[str, Any] = {"name": name, "metadata": {"org_id": org_id}}
        if email:
            params["email"] = email
        customer = await self._call(
            self._client.v1.customers.create_async,
            params=params,
            options={"idempotency_key": customer_key(org_id)},
        )
        return str(customer["id"])

    async def checkout_setup(self, customer_id: str, success_url: str, cancel_url: str) -> str:
        """A Stripe Checkout Session in `setup` mode for the customer: the URL of Stripe's
        page where the org's owner enters a card (the kernel never sees its number), which
        returns to `success_url` (or `cancel_url`)."""
        session = await self._call(
            self._client.v1.checkout.sessions.create_async,
            params={
                "mode": "setup",
                "customer": customer_id,
                "payment_method_types": ["card"],
                "success_url": success_url,
                "cancel_url": cancel_url,
            },
        )
        return str(session["url"])

    async def checkout_payment(
        self,
        *,
        invoice_id: str,
        number: str,
        attempt: int,
        customer_id: str,
        amount: Decimal,
        currency: str,
        expires_at: datetime,
        success_url: str,
        cancel_url: str,
    ) -> tuple[str, str]:
        """A Stripe Checkout Session in `payment` mode for the invoice (its Session id and
        the URL of Stripe's page, where the org's owner pays the exact amount once): the
        PaymentIntent it makes carries the attempt in its metadata, as a charge of the card
        on file does, and the page takes payment until `expires_at`. Keyed
        `invoice:{id}:attempt:{n}:checkout`."""
        attempt_data = {"invoice_id": invoice_id, "attempt": str(attempt)}
        params: dict[str, Any] = {
            "mode": "payment",
            "customer": customer_id,
            "line_items": [
                {
                    "price_data": {
                        "currency": currency.lower(),
                        "unit_amount": minor_units(amount, currency),
                        "product_data": {"name": f"Invoice {number}"},
                    },
                    "quantity": 1,
                }
            ],
            "payment_intent_data": {"metadata": attempt_data},
            "metadata": attempt_data,
            "expires_at": int(expires_at.timestamp()),
            "success_url": success_url,
            "cancel_url": cancel_url,
        }
        session = await self._call(
            self._client.v1.checkout.sessions.create_async,
            params=params,
            options={"idempotency_key": checkout_key(invoice_id, attempt)},
        )
        return str(session["id"]), str(session["url"])

    async def close_checkout(self, session_id: str) -> Charge | None:
        """A pay-now page closed for good: expired at Stripe if it is still open, so nobody
        can pay on it any more; then what was paid on it (its PaymentIntent as a Charge), or
        None when nothing was (it expired unpaid)."""
        sessions = self._client.v1.checkout.sessions
        session = await self._call(sessions.retrieve_async, session_id)
        if session.get("status") == "open":
            try:
                session = await self._call(sessions.expire_async, session_id)
            except StripeRefused:  # completed meanwhile: only an open Session expires
                session = await self._call(sessions.retrieve_async, session_id)
        paid = session.get("payment_intent")
        if session.get("status") != "complete" or not paid:
            return None
        if isinstance(paid, str):
            paid = await self._call(self._client.v1.payment_intents.retrieve_async, paid)
        return charge_of(paid)

    async def card_of_setup(self, setup_intent_id: str) -> Card | None:
        """The card a completed SetupIntent saved (Checkout in setup mode makes one)."""
        intent = await self._call(
            self._client.v1.setup_intents.retrieve_async,
            setup_intent_id,
            params={"expand": ["payment_method"]},
        )
        return await self._card(intent.get("payment_method"))

    async def make_default(self, customer_id: str, payment_method_id: str) -> None:
        """Make the card the one the customer's invoices are charged to."""
        await self._call(
            self._client.v1.customers.update_async,
            customer_id,
            params={"invoice_settings": {"default_payment_method": payment_method_id}},
        )

    async def card_of(self, method: Any) -> Card | None:
        """A payment method (its id, or as an event carries it) as a Card; None when it is
        not a card."""
        return await self._card(method)

    async def _card(self, method: Any) -> Card | None:
        if isinstance(method, str):  # a server that does not expand
            method = await self._call(self._client.v1.payment_methods.retrieve_async, method)
        if not method or method.get("type") != "card":
            return None
        card = method["card"]
        return Card(
            str(method["id"]),
            str(card["brand"]),
            str(card["last4"]),
            int(card["exp_month"]),
            int(card["exp_year"]),
        )

    async def default_card(self, customer_id: str) -> Card | None:
        """The customer's default payment method, if it is a card."""
        customer = await self._call(
            self._client.v1.customers.retrieve_async,
            customer_id,
            params={"expand": ["invoice_settings.default_payment_method"]},
        )
        return await self._card(
            (customer.get("invoice_settings") or {}).get("default_payment_method")
        )

    async def collect(
        self,
        *,
        invoice_id: str,
        attempt: int,
        customer_id: str,
        payment_method_id: str,
        amount: Decimal,
        currency: str,
    ) -> Charge:
        """Charge the card on file for the invoice, with nobody present: one PaymentIntent
        for the exact amount in the currency's smallest unit, confirmed off session, keyed
        `invoice:{id}:attempt:{n}` so that a retry of the same attempt charges nothing
        twice. A decline is an answer (`FAILED`, with Stripe's reason), not an error."""
        params: dict[str, Any] = {
            "amount": minor_units(amount, currency),
            "currency": currency.lower(),
            "customer": customer_id,
            "payment_method": payment_method_id,
            "confirm": True,
            "off_session": True,
            "metadata": {"invoice_id": invoice_id, "attempt": str(attempt)},
        }
        options: Any = {"idempotency_key": attempt_key(invoice_id, attempt)}
        try:
            intent = await self._call(
                self._client.v1.payment_intents.create_async, params=params, options=options
            )
        except self._stripe.CardError as declined:
            made = getattr(declined.error, "payment_intent", None) if declined.error else None
            return Charge(
                None if made is None else str(made["id"]),
                PaymentStatus.FAILED,
                amount,
                currency.upper(),
                failure=declined.user_message or str(declined),
                failure_code=declined.code,
            )
        return charge_of(intent)

    async def find_attempt(self, customer_id: str, invoice_id: str, attempt: int) -> Charge | None:
        """The PaymentIntent an attempt made, if Stripe has one: for an attempt whose answer
        was lost (the worker died), read before asking again. Among the customer's 100
        latest PaymentIntents, by their `metadata`."""
        listing = await self._call(
            self._client.v1.payment_intents.list_async,
            params={"customer": customer_id, "limit": 100},
        )
        for intent in listing["data"]:
            metadata = intent.get("metadata") or {}
            if metadata.get("invoice_id") == invoice_id and metadata.get("attempt") == str(attempt):
                return charge_of(intent)
        return None

    async def refund(
        self,
        *,
        payment_intent_id: str,
        amount: Decimal,
        currency: str,
        credit_note_id: str,
        invoice_id: str,
    ) -> RefundMade:
        """Give `amount` back from the PaymentIntent: one Refund, keyed
        `refund:{credit_note_id}` (a retry makes no second one), with the credit note in
        its metadata. StripeRefused when Stripe will not (more than is left of the charge;
        a disputed one)."""
        made = await self._call(
            self._client.v1.refunds.create_async,
            params={
                "payment_intent": payment_intent_id,
                "amount": minor_units(amount, currency),
                "metadata": {"credit_note_id": credit_note_id, "invoice_id": invoice_id},
            },
            options={"idempotency_key": refund_key(credit_note_id)},
        )
        return refund_of(made)

    async def find_refund(self, payment_intent_id: str, credit_note_id: str) -> RefundMade | None:
        """The Refund made for a credit note, if Stripe has one: for a refund whose answer
        was lost, read before asking again. Among the PaymentIntent's refunds, by metadata."""
        listing = await self._call(
            self._client.v1.refunds.list_async,
            params={"payment_intent": payment_intent_id, "limit": 100},
        )
        for made in listing["data"]:
            if (made.get("metadata") or {}).get("credit_note_id") == credit_note_id:
                return refund_of(made)
        return None

    async def refund_now(self, refund_id: str) -> RefundMade:
        """A Refund as Stripe has it now (one Stripe was still deciding)."""
        return refund_of(await self._call(self._client.v1.refunds.retrieve_async, refund_id))

    def verify_event(self, payload: bytes, signature: str | None, secret: str) -> dict[str, Any]:
        """The event Stripe sent, once its `Stripe-Signature` verifies (an HMAC-SHA256 of
        its timestamp and body with the endpoint's secret, the timestamp within 5 minutes);
        BadSignature otherwise."""
        stripe = self._stripe
        try:
            event = stripe.Webhook.construct_event(payload, signature, secret)
        except (ValueError, stripe.SignatureVerificationError) as exc:
            raise BadSignature(str(exc)) from None
        return dict(event.to_dict())

    async def attempts_since(self, since: datetime) -> list[StripeAttempt]:
        """Every PaymentIntent made since `since`, with the attempt its metadata names
        (reconciliation), a page of 100 at a time."""
        found: list[StripeAttempt] = []
        params: dict[str, Any] = {"created": {"gte": int(since.timestamp())}, "limit": 100}
        while True:
            page = await self._call(self._client.v1.payment_intents.list_async, params=params)
            for intent in page["data"]:
                metadata = intent.get("metadata") or {}
                attempt = str(metadata.get("attempt", ""))
                found.append(
                    StripeAttempt(
                        charge_of(intent),
                        metadata.get("invoice_id"),
                        int(attempt) if attempt.isdigit() else None,
                    )
                )
            if not page.get("has_more") or not page["data"]:
                return found
            params["starting_after"] = page["data"][-1]["id"]

    async def payment_intent(self, payment_intent_id: str) -> Charge:
        """A PaymentIntent as Stripe has it now (reconciliation, a missed webhook)."""
        return charge_of(
            await self._call(self._client.v1.payment_intents.retrieve_async, payment_intent_id)
        )

    async def _call(self, method: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """The call's answer as plain data; Stripe's failures sorted (see the errors)."""
        stripe = self._stripe
        try:
            answer = await method(*args, **kwargs)
        except stripe.CardError:
            raise
        except (stripe.APIConnectionError, stripe.RateLimitError) as exc:
            raise StripeUnavailable(f"Stripe could not be reached: {exc}") from exc
        except stripe.StripeError as exc:
            if exc.http_status is None or exc.http_status >= 500:
                raise StripeUnavailable(f"Stripe failed: {exc}") from exc
            if exc.http_status == 409:  # the same key is being answered: ask again later
                raise StripeUnavailable(f"Stripe is busy with this request: {exc}") from exc
            raise StripeRefused(f"Stripe refused the call ({exc.http_status}): {exc}") from exc
        return dict(answer.to_dict())


def charge_of(intent: dict[str, Any]) -> Charge:
    """A PaymentIntent (as the API answers it, or as an event carries it) as a Charge."""
    error = intent.get("last_payment_error") or {}
    status = _STATUSES.get(str(intent["status"]), PaymentStatus.PENDING)
    return Charge(
        str(intent["id"]),
        status,
        from_minor_units(int(intent["amount"]), str(intent["currency"])),
        str(intent["currency"]).upper(),
        failure=error.get("message") if status is PaymentStatus.FAILED else None,
        failure_code=(error.get("decline_code") or error.get("code"))
        if status is PaymentStatus.FAILED
        else None,
    )


def charge_of_checkout(session: dict[str, Any]) -> Charge | None:
    """What a pay-now page (a Checkout Session in payment mode, as an event carries it) came
    to: paid (its PaymentIntent succeeded), `canceled` once it expired unpaid, or None while
    it is neither (a payment by bank debit still being decided: its PaymentIntent's events
    tell the rest)."""
    paid = session.get("payment_intent")
    amount = from_minor_units(int(session.get("amount_total") or 0), str(session["currency"]))
    currency = str(session["currency"]).upper()
    if session.get("status") == "expired":
        return Charge(None, PaymentStatus.CANCELED, amount, currency)
    if session.get("payment_status") == "paid" and paid:
        paid_id = paid if isinstance(paid, str) else str(paid["id"])
        return Charge(paid_id, PaymentStatus.SUCCEEDED, amount, currency)
    return None


def refund_of(refund: dict[str, Any]) -> RefundMade:
    """A Refund (as the API answers it, or as an event carries it)."""
    status = str(refund.get("status"))
    succeeded = (
        True if status == "succeeded" else False if status in ("failed", "canceled") else None
    )
    return RefundMade(
        str(refund["id"]),
        succeeded,
        from_minor_units(int(refund["amount"]), str(refund["currency"])),
        str(refund["currency"]).upper(),
        failure=refund.get("failure_reason") if succeeded is False else None,
    )
