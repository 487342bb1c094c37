"""OpenMeter's protocol, under /compat/openmeter: the `openmeter` client with its endpoint
set to `<kernel>/compat/openmeter`. CloudEvents one at a time or in batches (`id` is the
idempotency key, `type` the metric, `subject` the org or one of its aliases, `data` the
properties), and an entitlement's value, which is the kernel's quota decision."""

from __future__ import annotations

import re
import uuid
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from billing_kernel.compat.http import (
    READ_SCOPES,
    WRITE_SCOPES,
    Refusal,
    answer_unrecognized_calls,
    api_key,
    first_error,
    json_body,
    speaking,
)
from billing_kernel.compat.rules import (
    ForeignEvent,
    RefusedBatch,
    customer_field,
    event_time,
    object_field,
    parse_all,
    text_field,
)
from billing_kernel.errors import InvalidInput
from billing_kernel.usage.schemas import MAX_BATCH
from billing_kernel.web.deps import kernel_of

router = APIRouter(prefix="/compat/openmeter/api/v1", include_in_schema=False)

FIELDS = {
    "org_id": "subject",
    "metric": "type",
    "quantity": "data.value",
    "idempotency_key": "id",
    "occurred_at": "time",
}
_RENAMED = {"occurred_at": "time", "idempotency_key": "id"}
"""The kernel's words for a CloudEvent's attributes, said in the event's own where they
appear in a message."""
_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    409: "Conflict",
    503: "Service Unavailable",
}


def render(refusal: Refusal) -> Response:
    """An error as OpenMeter answers it: RFC 7807 problem details, invalid events as 400,
    the CloudEvent's attributes named as sent (`time`, `id`), `instance` a URI for this
    occurrence."""
    error = first_error(refusal)
    status = 400 if error.status == 422 else error.status
    detail = error.message
    field = error.details.get("field")
    if field in FIELDS:  # the kernel's own check: name the attribute as sent
        detail = f"{FIELDS[str(field)]}: {detail}"
    if isinstance(refusal, RefusedBatch):
        detail = f"event {refusal.errors[0][0]}: {detail}"
        if len(refusal.errors) > 1:
            detail += f" (and {len(refusal.errors) - 1} more events refused)"
    for ours, theirs in _RENAMED.items():  # the attributes as the sender named them
        detail = re.sub(rf"\b{ours}\b", theirs, detail)
    body = {
        "type": "about:blank",
        "title": _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        "instance": f"urn:uuid:{uuid.uuid4()}",  # this occurrence (a URI, as the spec asks)
    }
    return JSONResponse(body, status_code=status, media_type="application/problem+json")


def parse_event(raw: object) -> ForeignEvent:
    """One CloudEvent; InvalidInput names the attribute that is wrong."""
    event = object_field(raw, "event")
    specversion = event.get("specversion")
    if specversion != "1.0":
        raise InvalidInput(
            f'specversion must be "1.0", got {specversion!r:.20}', field="specversion"
        )
    text_field(event.get("source"), "source")
    data = object_field(event.get("data"), "data")
    return ForeignEvent(
        customer=customer_field(event.get("subject"), "subject"),
        name=text_field(event.get("type"), "type"),
        properties=data,
        key=text_field(event.get("id"), "id"),
        occurred_at=event_time(event.get("time"), "time"),
        properties_field="data",
    )


@router.post("/events")
@speaking(render)
async def ingest_events(request: Request) -> Response:
    """One CloudEvent (`application/cloudevents+json`) or a list of them
    (`application/cloudevents-batch+json`, or `application/json` either way), all recorded
    or none; 204. An `id` sent again is deduplicated as OpenMeter does, also with another
    payload (OpenMeter's clients stamp a new `time` on a retry): counted once, as first sent,
    and logged."""
    key = await api_key(request, WRITE_SCOPES)
    body = await json_body(request)
    raws: list[object] = body if isinstance(body, list) else [body]
    if not 1 <= len(raws) <= MAX_BATCH:
        raise InvalidInput(f"send 1 to {MAX_BATCH} events", field="body")
    events = parse_all(raws, parse_event)
    await kernel_of(request).compat.ingest(events, only_org=key.org_id, conflict_is_duplicate=True)
    return Response(status_code=204)


@router.get("/customers/{customer}/entitlements/{feature}/value")
@router.get("/subjects/{customer}/entitlements/{feature}/value")
@speaking(render)
async def entitlement_value(customer: str, feature: str, request: Request) -> Response:
    """Whether the customer may use the feature (a metric) now, by the kernel's quota
    decision for one more unit, with its usage this month and what remains of its limit.
    A metric without a limit has no `balance` and never an `overage`."""
    key = await api_key(request, READ_SCOPES)
    compat = kernel_of(request).compat
    org_id = await compat.org_of(customer, only_org=key.org_id)
    decision = await compat.entitlement(org_id, feature)
    value: dict[str, Any] = {"hasAccess": decision.allowed, "usage": decision.used}
    if decision.limit is not None:
        value["balance"] = max(decision.limit - decision.used, 0)
        value["overage"] = max(decision.used - decision.limit, 0)
    else:
        value["overage"] = 0
    return JSONResponse(value)


answer_unrecognized_calls(
    router, render, "POST /api/v1/events and GET the entitlement value of a customer or subject"
)
