"""Lago's protocol, under /compat/lago: `lago-python-client` (and Lago's other clients) with
`api_url` set to `<kernel>/compat/lago/`. Events (`transaction_id` is the idempotency key,
`code` the metric, `external_subscription_id` the org or one of its aliases) one at a time or
in batches, and a customer's current usage."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from billing_kernel.auth.rules import ApiKeyCaller
from billing_kernel.compat.http import (
    READ_SCOPES,
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
from billing_kernel.compat.service import CurrentUsage, ForeignBatchResult
from billing_kernel.errors import BillingError, IdempotencyConflict, InvalidInput, OrgNotFound
from billing_kernel.invoices.rules import LineKind
from billing_kernel.metrics.rules import Aggregation
from billing_kernel.pricing.rules import PriceModel
from billing_kernel.summary.rules import MetricUsage
from billing_kernel.usage.schemas import MAX_BATCH
from billing_kernel.web.deps import kernel_of

LAGO_AGGREGATIONS = {
    Aggregation.SUM: "sum_agg",
    Aggregation.COUNT: "count_agg",
    Aggregation.MAX: "max_agg",
    Aggregation.LATEST: "latest_agg",
    Aggregation.UNIQUE_COUNT: "unique_count_agg",
    Aggregation.SEATS: "max_agg",  # the month's peak of members
}
"""A metric's aggregation as Lago names it (`billable_metric.aggregation_type`)."""

LAGO_CHARGE_MODELS = {
    PriceModel.PER_UNIT: "standard",
    PriceModel.GRADUATED: "graduated",
    PriceModel.VOLUME: "volume",
    PriceModel.PACKAGE: "package",
}
"""A plan metric's price model as Lago names its charge model (`charge.charge_model`)."""

router = APIRouter(prefix="/compat/lago/api/v1", include_in_schema=False)

FIELDS = {
    "org_id": "external_subscription_id",
    "metric": "code",
    "quantity": "properties.value",
    "idempotency_key": "transaction_id",
    "occurred_at": "timestamp",
}
"""The kernel's field names in Lago's words, for error details."""

_PHRASES = {400: "Bad Request", 401: "Unauthorized", 404: "Not Found"}


def render(refusal: Refusal) -> Response:
    """An error as Lago answers it, within each operation's documented statuses: `status`,
    `error`, `code`, and per field (and, for a batch, per event index) the messages. A
    body that is not JSON is 400; a `transaction_id` used before with another payload is
    Lago's `value_already_exist` (422); a key that may not do this is 401, as Lago has no
    403; an unknown customer is `customer_not_found`."""
    if isinstance(refusal, RefusedBatch):
        first = refusal.first
        details: dict[str, Any] = {
            str(index): _field_errors(error) for index, error in refusal.errors
        }
        if len(refusal.errors) == 1 and not _invalid(first):
            return render(first)
        return _error(422, "validation_errors", details)
    if refusal.details.get("field") == "body" and isinstance(refusal, InvalidInput):
        return _error(400, "bad_request", None, refusal.message)
    if _invalid(refusal):
        return _error(422, "validation_errors", _field_errors(refusal))
    if refusal.status == 403:
        return _error(401, "unauthorized", None, refusal.message)
    if isinstance(refusal, OrgNotFound):
        return _error(404, "customer_not_found", None, refusal.message)
    return _error(refusal.status, refusal.code, None, refusal.message)


def _invalid(error: BillingError) -> bool:
    return error.status == 422 or isinstance(error, InvalidInput | IdempotencyConflict)


def _field_errors(error: BillingError) -> dict[str, list[str]]:
    if isinstance(error, IdempotencyConflict):
        return {"transaction_id": ["value_already_exist"]}
    field = str(error.details.get("field", "base"))
    return {FIELDS.get(field, field): [error.message]}


def _error(
    status: int, code: str, details: dict[str, Any] | None, message: str | None = None
) -> JSONResponse:
    body: dict[str, Any] = {
        "status": status,
        "error": "Unprocessable Entity" if status == 422 else _PHRASES.get(status, "Error"),
        "code": code,
    }
    if details is not None:
        body["error_details"] = details
    if message is not None:
        body["message"] = message
    return JSONResponse(body, status_code=status)


def parse_event(raw: object) -> ForeignEvent:
    """One Lago event; InvalidInput names the field that is wrong."""
    event = object_field(raw, "event")
    customer = event.get("external_subscription_id", event.get("external_customer_id"))
    properties = object_field(event.get("properties"), "properties")
    return ForeignEvent(
        customer=customer_field(customer, "external_subscription_id"),
        name=text_field(event.get("code"), "code"),
        properties=properties,
        key=text_field(event.get("transaction_id"), "transaction_id"),
        occurred_at=event_time(event.get("timestamp"), "timestamp"),
    )


def _event_out(
    event: ForeignEvent, org_id: str, occurred: datetime, now: datetime
) -> dict[str, Any]:
    return {
        "lago_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{org_id}/{event.key}")),
        "transaction_id": event.key,
        "lago_customer_id": None,
        "lago_subscription_id": None,
        "external_subscription_id": event.customer,
        "code": event.name,
        "timestamp": occurred.isoformat().replace("+00:00", "Z"),
        "properties": dict(event.properties),
        "precise_total_amount_cents": None,
        "created_at": now.isoformat().replace("+00:00", "Z"),
    }


async def _ingest(
    request: Request, key: ApiKeyCaller, raws: list[object]
) -> tuple[list[ForeignEvent], ForeignBatchResult]:
    parsed = parse_all(raws, parse_event)
    result = await kernel_of(request).compat.ingest(parsed, only_org=key.org_id)
    return [e for e in parsed if isinstance(e, ForeignEvent)], result


@router.post("/events")
@speaking(render)
async def create_event(request: Request) -> Response:
    """One event: `{"event": {...}}`; answers it as recorded (a repeat: as first recorded)."""
    key = await api_key(request, WRITE_SCOPES)
    body = await json_body(request)
    if not isinstance(body, Mapping) or "event" not in body:
        raise InvalidInput('the body must be {"event": {...}}', field="event")
    try:
        events, result = await _ingest(request, key, [body["event"]])
    except RefusedBatch as refused:  # one event: its error, not a batch's
        raise refused.first from None
    now = kernel_of(request).now()
    return JSONResponse({"event": _event_out(events[0], result.orgs[0], result.times[0], now)})


@router.post("/events/batch")
@speaking(render)
async def create_batch(request: Request) -> Response:
    """Up to 1,000 events, `{"events": [...]}`: all recorded, or none (422 naming each
    refused event by its index)."""
    key = await api_key(request, WRITE_SCOPES)
    body = await json_body(request)
    raws = batch_of(body, most=MAX_BATCH)
    events, result = await _ingest(request, key, raws)
    now = kernel_of(request).now()
    return JSONResponse(
        {
            "events": [
                _event_out(event, org, occurred, now)
                for event, org, occurred in zip(events, result.orgs, result.times, strict=True)
            ]
        }
    )


@router.get("/customers/{customer_id}/current_usage")
@speaking(render)
async def current_usage(customer_id: str, request: Request) -> Response:
    """The customer's usage this month, per metric, with what it costs so far beyond what
    the plan includes (the kernel's upcoming invoice). `external_subscription_id` is taken
    and not needed: an org has one subscription."""
    key = await api_key(request, READ_SCOPES)
    compat = kernel_of(request).compat
    org_id = await compat.org_of(customer_id, only_org=key.org_id)
    return JSONResponse({"customer_usage": customer_usage(await compat.current_usage(org_id))})


def customer_usage(current: CurrentUsage) -> dict[str, Any]:
    """Lago's customer usage object for the org's current period."""
    summary, invoice = current.summary, current.invoice
    currency = summary.plan.currency
    charged: dict[str, Decimal] = {}
    for line in invoice.lines:
        if line.metric is not None and line.kind in (LineKind.OVERAGE, LineKind.SEATS):
            charged[line.metric] = charged.get(line.metric, Decimal(0)) + line.amount
    charges = []
    for usage in summary.usage:
        metric = usage.metric
        units = str(usage.used if usage.peak is None else usage.peak)
        charges.append(
            {
                "units": units,
                "total_aggregated_units": units,
                "events_count": current.events.get(metric.key, 0),
                "amount_cents": _cents(charged.get(metric.key, Decimal(0))),
                "amount_currency": currency,
                "charge": {
                    "lago_id": _lago_id("charge", summary.plan.slug, metric.key),
                    "charge_model": LAGO_CHARGE_MODELS[
                        summary.plan.allowance(metric.key).price_model
                    ],
                    "invoice_display_name": metric.name,
                },
                "billable_metric": {
                    "lago_id": _lago_id("billable_metric", metric.key),
                    "name": metric.name,
                    "code": metric.key,
                    "aggregation_type": LAGO_AGGREGATIONS[metric.aggregation],
                },
                "filters": _filters(current, usage),
                "grouped_usage": [],
                "pricing_unit_details": None,
                "presentation_breakdowns": [],
            }
        )
    amount = _cents(sum(charged.values(), Decimal(0)))
    return {
        "from_datetime": _time(summary.period.start),
        "to_datetime": _time(summary.period.end),
        "issuing_date": summary.period.end.date().isoformat(),
        "lago_invoice_id": None,
        "currency": currency,
        "amount_cents": amount,
        "total_amount_cents": amount,
        "taxes_amount_cents": 0,
        "charges_usage": charges,
    }


def _filters(current: CurrentUsage, usage: MetricUsage) -> list[dict[str, Any]]:
    """A metric priced per value as Lago shows a charge's filters: one per value priced
    apart (`values`: the property and the value), and one for every other value (`values`:
    null, Lago's default filter), each with its units, its events and what it costs as its
    invoice line would bill it; none for any other metric."""
    dimension = current.summary.plan.allowance(usage.metric.key).dimension
    if dimension is None:
        return []
    counted = current.value_events.get(usage.metric.key, {})
    events = current.events.get(usage.metric.key, 0)
    filters: list[dict[str, Any]] = []
    for share in usage.shares:
        if share.value is None:
            count = max(events - sum(counted.values()), 0)
            values = None
        else:
            count = counted.get(share.value, 0)
            values = {dimension.property: [share.value]}
        filters.append(
            {
                "invoice_display_name": None,
                "values": values,
                "units": str(share.used),
                "total_aggregated_units": str(share.used),
                "amount_cents": _cents(share.cost().amount),
                "events_count": count,
                "pricing_unit_details": None,
                "presentation_breakdowns": [],
            }
        )
    return filters


def _lago_id(kind: str, *names: str) -> str:
    """A stable UUID for one of the kernel's objects where Lago has a UUID (`lago_id`):
    derived from the kind and the kernel's names, the same at every call."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"billing-kernel:{kind}:{':'.join(names)}"))


def _cents(amount: Decimal) -> int:
    return int(amount * 100)


def _time(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


answer_unrecognized_calls(
    router, render, "POST /events, POST /events/batch and GET /customers/{id}/current_usage"
)
