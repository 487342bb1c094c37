"""Stripe's meter events, under /compat/stripe: `stripe` (the official library) with its API
base set to `<kernel>/compat/stripe`; and at the kernel's root (`/v1/...`), for Stripe's
libraries that take only a host (stripe-node, stripe-go). `POST /v1/billing/meter_events`,
form-encoded:
`event_name` is the metric, `payload[stripe_customer_id]` the org or one of its aliases,
`payload[value]` the quantity, `identifier` the idempotency key (else the request's
`Idempotency-Key`), `timestamp` Unix seconds."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from billing_kernel.compat.http import WRITE_SCOPES, Refusal, api_key, first_error, speaking
from billing_kernel.compat.rules import ForeignEvent, customer_field, event_time, text_field
from billing_kernel.errors import InvalidInput
from billing_kernel.web.deps import kernel_of

calls = APIRouter(include_in_schema=False)
"""Stripe's calls, without where they are mounted."""

CUSTOMER_KEY = "stripe_customer_id"
"""The payload key that names the customer (a meter's default `customer_mapping`)."""

PARAMETERS = frozenset({"event_name", "identifier", "timestamp"})
"""The meter event's own parameters besides `payload[...]` (and `expand[...]`, which every
Stripe call takes): any other is refused, as Stripe refuses it."""

IDENTIFIER_LENGTH = 100
"""The longest `identifier` Stripe takes."""

FIELDS = {
    "org_id": f"payload[{CUSTOMER_KEY}]",
    "metric": "event_name",
    "event": "event_name",
    "quantity": "payload[value]",
    "idempotency_key": "identifier",
    "occurred_at": "timestamp",
}


def render(refusal: Refusal) -> Response:
    """An error as Stripe answers it: `{"error": {type, code, message, param}}`, 400 for a
    request that is not valid (the client raises InvalidRequestError), 401 for a bad key
    (AuthenticationError), 403 for a key without the right (PermissionError)."""
    error = first_error(refusal)
    status = 400 if error.status in (409, 422) else error.status
    kind = "invalid_request_error"
    code = error.details.get("stripe_code", error.code)
    body: dict[str, Any] = {"type": kind, "code": code, "message": error.message}
    field = error.details.get("field")
    if field is not None:
        param = FIELDS.get(str(field), str(field))
        if param.startswith("payload."):
            param = _payload_field(param.removeprefix("payload."))
        body["param"] = param
    if error.status == 404:
        body["code"] = "resource_missing"
    return JSONResponse({"error": body}, status_code=status)


def _payload_field(name: str) -> str:
    return f"payload[{name}]"


def parse_form(body: bytes, idempotency_key: str | None) -> ForeignEvent:
    """A meter event from its form fields; InvalidInput names the one that is wrong."""
    try:
        pairs = parse_qsl(body.decode(), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        raise InvalidInput("the body is not form-encoded text", field="body") from None
    form: dict[str, str] = {}
    payload: dict[str, object] = {}
    for name, value in pairs:
        if name.startswith("payload[") and name.endswith("]"):
            payload[name[len("payload[") : -1]] = value
        else:
            form[name] = value
    for name in form:
        if name not in PARAMETERS and not name.startswith("expand["):
            raise InvalidInput(
                f"Received unknown parameter: {name}", field=name, stripe_code="parameter_unknown"
            )
    identifier = form.get("identifier")
    if identifier is not None and len(identifier) > IDENTIFIER_LENGTH:
        raise InvalidInput(
            f"Invalid string: {identifier[:20]}...; must be at most {IDENTIFIER_LENGTH} characters",
            field="identifier",
        )
    customer = payload.pop(CUSTOMER_KEY, None)
    key = identifier or idempotency_key or f"mtr_{uuid.uuid4().hex}"
    return ForeignEvent(
        customer=customer_field(customer, _payload_field(CUSTOMER_KEY)),
        name=text_field(form.get("event_name"), "event_name"),
        properties=payload,
        key=key,
        occurred_at=event_time(form.get("timestamp") or None, "timestamp"),
        properties_field="payload",
    )


@calls.post("/billing/meter_events")
@speaking(render)
async def create_meter_event(request: Request) -> Response:
    """Record one meter event; a repeat of an identifier counts once and is answered as
    the first."""
    key = await api_key(request, WRITE_SCOPES, basic=True)
    event = parse_form(await request.body(), request.headers.get("idempotency-key"))
    kernel = kernel_of(request)
    result = await kernel.compat.ingest([event], only_org=key.org_id)
    payload = {CUSTOMER_KEY: event.customer, **event.properties}
    return JSONResponse(
        {
            "object": "billing.meter_event",
            "created": int(kernel.now().timestamp()),
            "event_name": event.name,
            "identifier": event.key,
            "livemode": False,
            "payload": payload,
            "timestamp": int(result.times[0].timestamp()),
        }
    )


@calls.api_route("/{path:path}", methods=["GET", "POST", "DELETE", "PUT", "PATCH"])
async def unrecognized(request: Request, path: str) -> Response:
    """Every other call: Stripe's answer to a URL it does not know (404, an
    `invalid_request_error`), so Stripe's clients raise their typed error
    (`InvalidRequestError`) rather than failing to read the answer."""
    return JSONResponse(
        {
            "error": {
                "type": "invalid_request_error",
                "message": f"Unrecognized request URL ({request.method}: /v1/{path}). This "
                "service implements only POST /v1/billing/meter_events of Stripe's API.",
            }
        },
        status_code=404,
    )


router = APIRouter(include_in_schema=False)
router.include_router(calls, prefix="/compat/stripe/v1")
router.include_router(calls, prefix="/v1")
