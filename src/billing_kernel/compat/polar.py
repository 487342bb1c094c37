"""Polar's event ingestion, under /compat/polar: `polar-sdk` with its base URL set to
`<kernel>/compat/polar`. `POST /v1/events/ingest`: `name` is the metric,
`external_customer_id` the org or one of its aliases (`customer_id`, Polar's own customer
id, an alias), `metadata.value` the quantity, `external_id` the idempotency key."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from billing_kernel.compat.http import (
    WRITE_SCOPES,
    Refusal,
    answer_unrecognized_calls,
    api_key,
    json_body,
    speaking,
)
from billing_kernel.compat.rules import (
    ForeignEvent,
    RefusedBatch,
    batch_of,
    customer_field,
    event_time,
    object_field,
    parse_all,
    text_field,
)
from billing_kernel.errors import BillingError, InvalidInput
from billing_kernel.usage.rules import RecordStatus
from billing_kernel.usage.schemas import MAX_BATCH
from billing_kernel.web.deps import kernel_of

router = APIRouter(prefix="/compat/polar/v1", include_in_schema=False)

FIELDS = {
    "org_id": "external_customer_id",
    "metric": "name",
    "quantity": "metadata.value",
    "idempotency_key": "external_id",
    "occurred_at": "timestamp",
}


_ERRORS = {401: "Unauthorized", 403: "NotPermitted", 404: "ResourceNotFound"}
"""Polar's names for its errors, by status."""


def render(refusal: Refusal) -> Response:
    """An error as Polar answers it: a refused body as 422 with `detail`, a list of
    `{loc, msg, type}`; anything else as `{"error", "detail"}` with its status."""
    if isinstance(refusal, RefusedBatch) and all(e.status == 422 for _, e in refusal.errors):
        return _validation([(index, error) for index, error in refusal.errors])
    error = refusal.first if isinstance(refusal, RefusedBatch) else refusal
    if error.status == 422:
        return _validation([(None, error)])
    name = _ERRORS.get(error.status, error.code)
    return JSONResponse({"error": name, "detail": error.message}, status_code=error.status)


def _validation(errors: list[tuple[int | None, BillingError]]) -> Response:
    detail = []
    for index, error in errors:
        field = str(error.details.get("field", "body"))
        loc: list[str | int] = ["body"]
        if index is not None:
            loc += ["events", index]
        loc += FIELDS.get(field, field).split(".")
        detail.append({"loc": loc, "msg": error.message, "type": error.code})
    return JSONResponse({"detail": detail}, status_code=422)


def parse_event(raw: object) -> ForeignEvent:
    """One Polar event; InvalidInput names the field that is wrong."""
    event = object_field(raw, "event")
    metadata = object_field(event.get("metadata"), "metadata")
    key = event.get("external_id")
    if "external_customer_id" in event:  # the product's own id: an org, made if new
        customer, field, known_only = event["external_customer_id"], "external_customer_id", None
    else:  # Polar's customer: a UUID one of the orgs goes by (an alias)
        customer, field, known_only = event.get("customer_id"), "customer_id", "customer_id"
        try:
            uuid.UUID(str(customer))
        except ValueError:
            raise InvalidInput("Input should be a valid UUID", field=field) from None
    stamp = event.get("timestamp")
    if stamp is not None and not isinstance(stamp, str):  # Polar takes date-time text only
        raise InvalidInput("Input should be a valid datetime", field="timestamp")
    return ForeignEvent(
        customer=customer_field(customer, field),
        name=text_field(event.get("name"), "name"),
        properties=metadata,
        key=f"evt_{uuid.uuid4().hex}" if key is None else text_field(key, "external_id"),
        occurred_at=event_time(stamp, "timestamp"),
        properties_field="metadata",
        known_only=known_only,
    )


@router.post("/events/ingest")
@speaking(render)
async def ingest(request: Request) -> Response:
    """Up to 1,000 events, `{"events": [...]}`, all recorded or none: how many were new
    (`inserted`) and how many repeated an `external_id` already recorded (`duplicates`,
    with another payload too, as Polar counts them)."""
    key = await api_key(request, WRITE_SCOPES)
    body = await json_body(request)
    raws = batch_of(body, most=MAX_BATCH)
    events = parse_all(raws, parse_event)
    result = await kernel_of(request).compat.ingest(
        events, only_org=key.org_id, conflict_is_duplicate=True
    )
    answer: dict[str, Any] = {
        "inserted": result.count(RecordStatus.ACCEPTED),
        # Polar counts a repeated `external_id` as a duplicate whatever it carries: so does
        # this, the event counted once, as first sent (the conflict is logged).
        "duplicates": result.count(RecordStatus.DUPLICATE) + result.count(RecordStatus.CONFLICT),
    }
    return JSONResponse(answer)


answer_unrecognized_calls(router, render, "POST /v1/events/ingest")
