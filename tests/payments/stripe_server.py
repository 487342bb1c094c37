"""localstripe, the Stripe-compatible server the payments tests talk to, run on 127.0.0.1 in
a process of its own with its state in memory (its own launcher binds every interface and
keeps its state in a fixed file in /tmp). What Stripe does that it does not is added in
front of it, written from Stripe's API reference: idempotent requests (a key's answer
replayed), listing PaymentIntents by customer, and Checkout Sessions in setup and payment
mode (made, read and expired; the test completes one as the customer would). It does not
check `expires_at` against its own clock (the tests run on a clock of their own). Started
and stopped by the test."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx

from tests.live import stop_process

LAUNCHER = """
import json, socket, sys
from aiohttp import web
import localstripe.resources as resources
from localstripe.server import app

resources.Store.dump_to_disk = lambda self: None  # in memory: nothing written to /tmp

# What Stripe does and localstripe does not, written from Stripe's API reference:
answered = {}  # Idempotency-Key -> (path, body, status, answer)
answering = set()
sessions = {}  # Checkout Sessions by id


@web.middleware
async def as_stripe_documents(request, handler):
    async def answer(request):
        return await more_than_localstripe(request, handler)

    # "Idempotent requests": a POST with a key Stripe has answered gets that answer again
    # (Idempotent-Replayed: true); the same key with other parameters is refused (400
    # idempotency_error); one still being answered is a 409. 5xx answers are not kept.
    key = request.headers.get("Idempotency-Key")
    if request.method == "POST" and key:
        body = await request.read()
        if key in answering:
            return web.json_response(
                {"error": {"type": "idempotency_error", "message": "in use"}}, status=409
            )
        if key in answered:
            path, sent, status, kept = answered[key]
            if (path, sent) != (request.path, body):
                return web.json_response(
                    {"error": {"type": "idempotency_error",
                               "message": "Keys for idempotent requests can only be used "
                                          "with the same parameters they were first used with."}},
                    status=400,
                )
            return web.Response(
                status=status, body=kept, content_type="application/json",
                headers={"Idempotent-Replayed": "true"},
            )
        answering.add(key)
        try:
            response = await answer(request)
        finally:
            answering.discard(key)
        if response.status < 500:
            answered[key] = (request.path, body, response.status, response.body)
        return response
    return await answer(request)


async def more_than_localstripe(request, handler):
    # "List all PaymentIntents" filters by `customer`; localstripe refuses the parameter.
    # ... and by `created[gte]`; localstripe refuses both (it pages, 10 by default).
    if request.method == "GET" and request.path == "/v1/payment_intents":
        customer = request.query.get("customer")
        since = request.query.get("created[gte]")
        if customer is not None or since is not None:
            query = {"limit": "100"}
            response = await handler(request.clone(rel_url=request.rel_url.with_query(query)))
            listing = json.loads(response.body)
            listing["data"] = [
                i for i in listing["data"]
                if (customer is None or i.get("customer") == customer)
                and (since is None or i["created"] >= int(since))
            ]
            listing["has_more"] = False
            return web.json_response(listing, status=response.status)
    # "Create a refund": no more than is left of the charge (localstripe refunds anything).
    if request.path == "/v1/refunds" and request.method == "POST":
        form = await request.post()
        intent_id = form.get("payment_intent")
        if intent_id:
            intent = resources.PaymentIntent._api_retrieve(intent_id)
            charge = intent.latest_charge.id if intent.latest_charge else None
            given = sum(
                r.amount for r in resources.store.values()
                if getattr(r, "object", None) == "refund" and r.charge == charge
            )
            left = intent.amount - given
            asked = int(form.get("amount") or left)
            if given >= intent.amount or asked > left:
                return web.json_response(
                    {"error": {"type": "invalid_request_error", "param": "amount",
                               "code": "charge_already_refunded" if given >= intent.amount
                               else "amount_too_large",
                               "message": f"Refund amount ({asked}) is greater than "
                                          f"unrefunded amount on charge ({left})"}},
                    status=400,
                )
    # Checkout Sessions (localstripe has none): made, read, and completed by the test as
    # the customer would on Stripe's page (`POST /_config/checkout/{id}/complete`, `setup_intent=`).
    if request.path == "/v1/checkout/sessions" and request.method == "POST":
        form = await request.post()
        if form.get("mode") not in ("setup", "payment") or not form.get("success_url"):
            return web.json_response(
                {"error": {"type": "invalid_request_error", "message": "Missing mode"}},
                status=400,
            )
        number = len(sessions) + 1
        session_id = f"cs_test_{number:024d}"
        sessions[session_id] = {
            "id": session_id, "object": "checkout.session", "mode": form["mode"],
            "customer": form.get("customer"), "status": "open", "setup_intent": None,
            "payment_intent": None, "payment_status": "unpaid",
            "success_url": form["success_url"], "cancel_url": form.get("cancel_url"),
            "metadata": {k[9:-1]: v for k, v in form.items() if k.startswith("metadata[")},
            "url": f"https://checkout.stripe.com/c/pay/{session_id}",
            "amount_total": None, "currency": None, "expires_at": None,
        }
        if form["mode"] == "payment":
            # A payment needs its line items; what it makes carries payment_intent_data.
            item = "line_items[0][price_data]"
            if f"{item}[unit_amount]" not in form or f"{item}[currency]" not in form:
                del sessions[session_id]
                return web.json_response(
                    {"error": {"type": "invalid_request_error", "param": "line_items",
                               "message": "Missing required param: line_items."}},
                    status=400,
                )
            prefix = "payment_intent_data[metadata]["
            sessions[session_id] |= {
                "amount_total": int(form[f"{item}[unit_amount]"])
                * int(form.get("line_items[0][quantity]", "1")),
                "currency": form[f"{item}[currency]"],
                "expires_at": int(form["expires_at"]) if "expires_at" in form else None,
                "_intent_metadata": {
                    k[len(prefix):-1]: v for k, v in form.items() if k.startswith(prefix)
                },
            }
        return web.json_response(sessions[session_id])
    # "Expire a Checkout Session": only an open one; afterwards nobody can pay on it.
    if (
        request.path.startswith("/v1/checkout/sessions/")
        and request.path.endswith("/expire")
        and request.method == "POST"
    ):
        found = sessions.get(request.path.split("/")[4])
        if found is None or found["status"] != "open":
            return web.json_response(
                {"error": {"type": "invalid_request_error",
                           "message": 'Only Checkout Sessions with a status in ["open"] '
                                      'can be expired.'}},
                status=400,
            )
        found["status"] = "expired"
        return web.json_response(found)
    if request.path.startswith("/v1/checkout/sessions/") and request.method == "GET":
        found = sessions.get(request.path.rsplit("/", 1)[1])
        if found is None:
            return web.json_response(
                {"error": {"type": "invalid_request_error", "message": "No such session"}},
                status=404,
            )
        return web.json_response(found)
    if request.path.startswith("/_config/checkout/") and request.path.endswith("/complete"):
        found = sessions[request.path.split("/")[3]]
        form = await request.post()
        if found["status"] != "open":  # Stripe's page takes nothing once it has expired
            return web.json_response({"error": {"message": "expired"}}, status=400)
        if found["mode"] == "setup":
            found |= {"status": "complete", "setup_intent": form.get("setup_intent")}
        else:
            found |= {"status": "complete", "payment_status": "paid",
                      "payment_intent": form.get("payment_intent")}
        return web.json_response(found)
    # The test ages every idempotency key past Stripe's 24 hours: they are forgotten.
    if request.path == "/_config/idempotency" and request.method == "DELETE":
        answered.clear()
        return web.json_response({})
    if request.path == "/_config/data" and request.method == "DELETE":
        answered.clear()
        sessions.clear()
    return await handler(request)


app.middlewares.append(as_stripe_documents)
sock = socket.socket()
sock.bind(("127.0.0.1", 0))
sock.listen(128)  # connections wait in the backlog until the app accepts them
print(sock.getsockname()[1], flush=True)
web.run_app(app, sock=sock, print=None, access_log=None, handle_signals=True)
"""

TEST_KEY = "sk_test_billing_kernel"
"""localstripe takes any key that looks like a secret key."""


@dataclass
class StripeServer:
    base: str
    """What `BILLING_STRIPE_API_BASE` points at."""

    def reset(self) -> None:
        """Forget every object (customers, payment methods, intents)."""
        httpx.delete(f"{self.base}/_config/data").raise_for_status()

    def forget_keys(self) -> None:
        """Forget every idempotency key, as Stripe does 24 hours after its first use."""
        httpx.delete(f"{self.base}/_config/idempotency").raise_for_status()

    def listen(self, url: str, secret: str) -> None:
        """Send every event to `url`, signed with `secret` (its own webhook configuration:
        it has no `/v1/webhook_endpoints`)."""
        httpx.post(
            f"{self.base}/_config/webhooks/kernel", data={"url": url, "secret": secret}
        ).raise_for_status()


@contextmanager
def stripe_server() -> Iterator[StripeServer]:
    """localstripe on a free port of 127.0.0.1, stopped on leaving."""
    # Its log goes to a file, not a pipe: a pipe nobody reads would block it once full.
    with tempfile.TemporaryFile(mode="w+") as log:
        process = subprocess.Popen(
            [sys.executable, "-c", LAUNCHER], stdout=subprocess.PIPE, stderr=log, text=True
        )
        try:
            assert process.stdout is not None
            port = process.stdout.readline().strip()  # printed once bound and listening
            if not port.isdigit():
                process.wait(timeout=10)
                log.seek(0)
                raise RuntimeError(f"localstripe did not start: {log.read()[-2000:]}")
            yield StripeServer(f"http://127.0.0.1:{port}")
        finally:
            stop_process(process)
            process.stdout.close()  # type: ignore[union-attr]
