"""Each protocol held to its incumbent's published API description, operation by operation:
every answer's status is one the operation documents, and its body has the required fields
and types of the schema documented for that status (success and error alike), formats
included (UUIDs, date-times, URIs).

The descriptions' facts are written here as this project's own schemas: only what an answer
is checked for, each naming where it comes from. Lago: lago-openapi (`src/resources/events*`,
`customer_current_usage`, `src/schemas/Event*`, `CustomerUsage*`, `ApiError*`). OpenMeter:
its cloud description as `@openmeter/sdk` 1.0.0-beta.232 types it (`ingestEvents`,
`getCustomerEntitlementValue`, `EntitlementValue`, `UnexpectedProblemResponse`). Stripe:
spec3 (`PostBillingMeterEvents`, `billing.meter_event`, `error`). Polar: the 2026-10
description as `@polar-sh/sdk` 1.0.1 types it (`events:ingest`, `EventsIngestResponse`,
`HTTPValidationError`, and its `Unauthorized`, `NotPermitted`, `ResourceNotFound`)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import jsonschema_rs
import pytest

from tests.compat.conftest import Live

pytestmark = pytest.mark.long

NULLABLE_UUID = {"type": ["string", "null"], "format": "uuid"}
DECIMAL_TEXT = {"type": "string", "pattern": "^[0-9]+.?[0-9]*$"}


def obj(required: Mapping[str, Any], **optional: Any) -> dict[str, Any]:
    """An object schema: `required` fields with their schemas, and `optional` ones."""
    return {
        "type": "object",
        "required": list(required),
        "properties": {**required, **optional},
    }


@dataclass(frozen=True)
class Operation:
    """One operation as its incumbent documents it: the statuses it may answer, and the
    schema of the body for each (None: no body; `error` stands for every 4xx and 5xx the
    description covers with a default response)."""

    name: str
    bodies: Mapping[int | str, dict[str, Any] | None]

    def check(self, response: httpx.Response) -> None:
        status = response.status_code
        documented = status in self.bodies or (status >= 400 and "error" in self.bodies)
        assert documented, f"{self.name}: {status} is not documented: {response.text[:300]}"
        schema = self.bodies.get(status, self.bodies.get("error"))
        if schema is None:
            assert response.content == b"", f"{self.name}: {status} has no body documented"
            return
        body = response.json()
        validator = jsonschema_rs.Draft202012Validator(schema, validate_formats=True)
        problems = [f"{e.instance_path}: {e.message}" for e in validator.iter_errors(body)]
        assert problems == [], f"{self.name} {status}: {problems} in {body}"


# Lago: lago-openapi.
LAGO_BAD_REQUEST = obj({"status": {"type": "integer"}, "error": {"type": "string"}})
LAGO_UNAUTHORIZED = LAGO_BAD_REQUEST
LAGO_UNPROCESSABLE = obj(
    {
        "status": {"type": "integer"},
        "error": {"type": "string"},
        "code": {"type": "string"},
        "error_details": {"type": "object"},
    }
)
LAGO_NOT_FOUND = obj(
    {"status": {"type": "integer"}, "error": {"type": "string"}, "code": {"type": "string"}}
)
LAGO_EVENT = obj(
    {
        "event": obj(
            {
                "transaction_id": {"type": "string"},
                "lago_customer_id": NULLABLE_UUID,
                "code": {"type": "string"},
                "timestamp": {"type": "string", "format": "date-time"},
                "lago_subscription_id": NULLABLE_UUID,
                "external_subscription_id": {"type": "string"},
            },
            lago_id={"type": ["string", "null"]},
            precise_total_amount_cents={"type": ["string", "null"]},
            properties={"type": "object"},
            created_at={"type": ["string", "null"], "format": "date-time"},
        )
    }
)
LAGO_CHARGE_USAGE = obj(
    {
        "units": DECIMAL_TEXT,
        "total_aggregated_units": DECIMAL_TEXT,
        "events_count": {"type": "integer"},
        "amount_cents": {"type": "integer"},
        "amount_currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
        "charge": obj(
            {
                "lago_id": {"type": "string", "format": "uuid"},
                "charge_model": {
                    "enum": ["standard", "graduated", "package", "percentage", "volume"]
                },
            },
            invoice_display_name={"type": ["string", "null"]},
        ),
        "billable_metric": obj(
            {
                "lago_id": {"type": "string", "format": "uuid"},
                "name": {"type": "string"},
                "code": {"type": "string"},
                "aggregation_type": {
                    "enum": [
                        "count_agg",
                        "sum_agg",
                        "max_agg",
                        "unique_count_agg",
                        "weighted_sum_agg",
                        "latest_agg",
                    ]
                },
            }
        ),
    },
    pricing_unit_details={"type": ["object", "null"]},
    filters={"type": "array"},
    grouped_usage={"type": "array"},
    presentation_breakdowns={"type": "array"},
)
LAGO_CUSTOMER_USAGE = obj(
    {
        "customer_usage": obj(
            {
                "from_datetime": {"type": "string", "format": "date-time"},
                "to_datetime": {"type": "string", "format": "date-time"},
                "issuing_date": {"type": "string", "format": "date"},
                "amount_cents": {"type": "integer"},
                "taxes_amount_cents": {"type": "integer"},
                "total_amount_cents": {"type": "integer"},
                "charges_usage": {"type": "array", "items": LAGO_CHARGE_USAGE},
            },
            lago_invoice_id=NULLABLE_UUID,
            currency={"type": "string", "pattern": "^[A-Z]{3}$"},
        )
    }
)
LAGO_CREATE_EVENT = Operation(
    "Lago createEvent",
    {200: LAGO_EVENT, 400: LAGO_BAD_REQUEST, 401: LAGO_UNAUTHORIZED, 422: LAGO_UNPROCESSABLE},
)
LAGO_CREATE_BATCH = Operation(
    "Lago createBatchEvents",
    {200: {}, 400: LAGO_BAD_REQUEST, 401: LAGO_UNAUTHORIZED, 422: LAGO_UNPROCESSABLE},
)
LAGO_CURRENT_USAGE = Operation(
    "Lago findCustomerCurrentUsage",
    {200: LAGO_CUSTOMER_USAGE, 401: LAGO_UNAUTHORIZED, 404: LAGO_NOT_FOUND},
)

# OpenMeter: every error is a problem (RFC 7807) with a URI type and instance.
OPENMETER_PROBLEM = obj(
    {
        "type": {"type": "string", "format": "uri"},
        "title": {"type": "string"},
        "detail": {"type": "string"},
        "instance": {"type": "string", "format": "uri"},
    },
    status={"type": "integer"},
)
OPENMETER_ERRORS: dict[int | str, dict[str, Any] | None] = dict.fromkeys(
    (400, 401, 403, 412, 500, 503), OPENMETER_PROBLEM
)
OPENMETER_INGEST = Operation(
    "OpenMeter ingestEvents", {204: None, **OPENMETER_ERRORS, "error": OPENMETER_PROBLEM}
)
OPENMETER_VALUE = Operation(
    "OpenMeter getCustomerEntitlementValue",
    {
        200: obj(
            {"hasAccess": {"type": "boolean"}},
            balance={"type": "number"},
            usage={"type": "number"},
            overage={"type": "number"},
            totalAvailableGrantAmount={"type": "number"},
            config={"type": "string"},
        ),
        404: OPENMETER_PROBLEM,
        **OPENMETER_ERRORS,
        "error": OPENMETER_PROBLEM,
    },
)

# Stripe: 200 and a default error response.
STRIPE_ERROR = obj(
    {
        "error": obj(
            {
                "type": {
                    "enum": [
                        "api_error",
                        "card_error",
                        "idempotency_error",
                        "invalid_request_error",
                    ]
                }
            },
            message={"type": "string"},
            code={"type": "string"},
            param={"type": "string"},
        )
    }
)
STRIPE_METER_EVENT = Operation(
    "Stripe PostBillingMeterEvents",
    {
        200: obj(
            {
                "created": {"type": "integer"},
                "event_name": {"type": "string", "maxLength": 100},
                "identifier": {"type": "string", "maxLength": 100},
                "livemode": {"type": "boolean"},
                "object": {"const": "billing.meter_event"},
                "payload": {"type": "object", "additionalProperties": {"type": "string"}},
                "timestamp": {"type": "integer"},
            }
        ),
        "error": STRIPE_ERROR,
    },
)

# Polar: 200 and 422 for the call; its access errors as its other operations document them.
POLAR_VALIDATION = obj(
    {},
    detail={
        "type": "array",
        "items": obj(
            {
                "loc": {"type": "array", "items": {"type": ["string", "integer"]}},
                "msg": {"type": "string"},
                "type": {"type": "string"},
            }
        ),
    },
)


def polar_error(name: str) -> dict[str, Any]:
    return obj({"error": {"const": name}, "detail": {"type": "string"}})


POLAR_INGEST = Operation(
    "Polar events:ingest",
    {
        200: obj({"inserted": {"type": "integer"}}, duplicates={"type": "integer"}),
        422: POLAR_VALIDATION,
        401: polar_error("Unauthorized"),
        403: polar_error("NotPermitted"),
        404: polar_error("ResourceNotFound"),
    },
)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


Call = Callable[[Live, str], httpx.Response]
"""A request to the kernel for an org (its id), as a client of the protocol would send it."""


def lago_event(live: Live, org: str, key: str, value: object, tx: str) -> httpx.Response:
    event = {
        "transaction_id": tx,
        "external_subscription_id": org,
        "code": "tokens",
        "properties": {"value": value},
    }
    return httpx.post(
        f"{live.url}/compat/lago/api/v1/events", json={"event": event}, headers=bearer(key)
    )


def test_lagos_operations_answer_as_lagos_description_documents(live: Live) -> None:
    org = live.new_org()
    reader = live.key_with("quota:check")
    writer = live.key_with("usage:write")
    base = f"{live.url}/compat/lago/api/v1"
    answers = [
        (LAGO_CREATE_EVENT, lago_event(live, org, live.key, 5, "tx-1")),
        (LAGO_CREATE_EVENT, lago_event(live, org, live.key, 5, "tx-1")),  # a repeat
        (LAGO_CREATE_EVENT, lago_event(live, org, live.key, 6, "tx-1")),  # reused: 422
        (LAGO_CREATE_EVENT, lago_event(live, org, live.key, "five", "tx-2")),
        (LAGO_CREATE_EVENT, lago_event(live, org, "bk_wrong", 5, "tx-3")),
        (LAGO_CREATE_EVENT, lago_event(live, org, reader, 5, "tx-4")),  # may not write
        (
            LAGO_CREATE_EVENT,
            httpx.post(f"{base}/events", content=b"{not json", headers=bearer(live.key)),
        ),
        (LAGO_CREATE_EVENT, httpx.post(f"{base}/events", json={}, headers=bearer(live.key))),
    ]
    batch = {
        "events": [
            {
                "transaction_id": "b-1",
                "external_subscription_id": org,
                "code": "tokens",
                "properties": {"value": 3},
            }
        ]
    }

    def send_batch(**body: Any) -> httpx.Response:
        return httpx.post(f"{base}/events/batch", headers=bearer(writer), **body)

    answers += [
        (LAGO_CREATE_BATCH, send_batch(json=batch)),
        (LAGO_CREATE_BATCH, send_batch(json={"events": [{}]})),
        (LAGO_CREATE_BATCH, send_batch(content=b"[")),
    ]
    usage = f"{base}/customers/{{}}/current_usage?external_subscription_id=x"
    answers += [
        (LAGO_CURRENT_USAGE, httpx.get(usage.format(org), headers=bearer(reader))),
        (LAGO_CURRENT_USAGE, httpx.get(usage.format("nobody-here"), headers=bearer(reader))),
        (LAGO_CURRENT_USAGE, httpx.get(usage.format(org), headers=bearer("bk_wrong"))),
        (LAGO_CURRENT_USAGE, httpx.get(usage.format(org), headers=bearer(writer))),  # no read
    ]
    unknown = Operation("Lago, a call the kernel does not serve", {404: LAGO_NOT_FOUND})
    answers.append((unknown, httpx.get(f"{base}/plans", headers=bearer(reader))))
    for operation, response in answers:
        operation.check(response)
    statuses = [response.status_code for _, response in answers]
    assert statuses == [
        *(200, 200, 422, 422, 401, 401, 400, 422),
        *(200, 422, 400),
        *(200, 404, 401, 401),
        404,
    ]
    assert live.used(org) == 8


def openmeter_event(org: str, value: object, **fields: object) -> dict[str, object]:
    return {
        "specversion": "1.0",
        "id": str(fields.pop("id", uuid.uuid4())),
        "source": "conformance",
        "type": "tokens",
        "subject": org,
        "data": {"value": value},
        **fields,
    }


def test_openmeters_operations_answer_as_openmeters_description_documents(live: Live) -> None:
    org = live.new_org()
    writer, reader = live.key_with("usage:write"), live.key_with("quota:check")
    ingest = f"{live.url}/compat/openmeter/api/v1/events"
    batch = {"Content-Type": "application/cloudevents-batch+json"}

    def send(body: object, key: str = live.key) -> httpx.Response:
        return httpx.post(ingest, json=body, headers={**bearer(key), **batch})

    answers = [
        (OPENMETER_INGEST, send(openmeter_event(org, 5, id="e-1"))),
        (OPENMETER_INGEST, send([openmeter_event(org, 5, id="e-1"), openmeter_event(org, 2)])),
        (OPENMETER_INGEST, send(openmeter_event(org, "five"))),
        (OPENMETER_INGEST, send(openmeter_event(org, 5, specversion="0.3"))),
        (OPENMETER_INGEST, send([])),
        (OPENMETER_INGEST, send(openmeter_event(org, 5), "bk_wrong")),
        (OPENMETER_INGEST, send(openmeter_event(org, 5), reader)),
        (OPENMETER_INGEST, httpx.post(ingest, content=b"{", headers=bearer(writer))),
    ]
    for path in (f"customers/{org}", f"subjects/{org}"):
        value = f"{live.url}/compat/openmeter/api/v1/{path}/entitlements/{{}}/value"
        answers += [
            (OPENMETER_VALUE, httpx.get(value.format("tokens"), headers=bearer(reader))),
            (OPENMETER_VALUE, httpx.get(value.format("no_feature"), headers=bearer(reader))),
            (OPENMETER_VALUE, httpx.get(value.format("tokens"), headers=bearer("bk_wrong"))),
        ]
    answers.append(
        (
            OPENMETER_VALUE,
            httpx.get(
                f"{live.url}/compat/openmeter/api/v1/customers/nobody-here/entitlements/"
                "tokens/value",
                headers=bearer(reader),
            ),
        )
    )
    unknown = Operation("OpenMeter, a call the kernel does not serve", {404: OPENMETER_PROBLEM})
    answers.append(
        (unknown, httpx.get(f"{live.url}/compat/openmeter/api/v1/meters", headers=bearer(reader)))
    )
    for operation, response in answers:
        operation.check(response)
    statuses = [response.status_code for _, response in answers]
    assert statuses == [
        *(204, 204, 400, 400, 400, 401, 403, 400),
        *(200, 404, 401, 200, 404, 401, 404),
        404,
    ]
    assert live.used(org) == 7


def test_stripes_operation_answers_as_stripes_description_documents(live: Live) -> None:
    customer = f"cus_{uuid.uuid4().hex[:14]}"
    org = live.new_org(customer)
    reader = live.key_with("quota:check")

    def meter_event(form: dict[str, str], key: str = live.key) -> httpx.Response:
        return httpx.post(f"{live.url}/v1/billing/meter_events", data=form, headers=bearer(key))

    event = {
        "event_name": "tokens",
        "identifier": "m-1",
        "payload[stripe_customer_id]": customer,
        "payload[value]": "4",
    }
    answers = [
        meter_event(event),
        meter_event(event),  # a repeat
        meter_event({**event, "payload[value]": "5"}),  # reused identifier: refused
        meter_event({**event, "identifier": "m-2", "payload[value]": "four"}),
        meter_event({**event, "identifier": "x" * 101}),
        meter_event({**event, "identifier": "m-3", "colour": "red"}),
        meter_event({"payload[value]": "1"}),
        meter_event(event, "bk_wrong"),
        meter_event({**event, "identifier": "m-4"}, reader),
        httpx.get(f"{live.url}/v1/billing/meters", headers=bearer(live.key)),
        httpx.post(
            f"{live.url}/compat/stripe/v1/billing/meter_events",
            data={**event, "identifier": "m-5"},
            headers=bearer(live.key),
        ),
    ]
    for response in answers:
        STRIPE_METER_EVENT.check(response)
    statuses = [response.status_code for response in answers]
    assert statuses == [200, 200, 400, 400, 400, 400, 400, 401, 403, 404, 200]
    assert live.used(org) == 8


def test_polars_operation_answers_as_polars_description_documents(live: Live) -> None:
    org = live.new_org()
    reader = live.key_with("quota:check")
    ingest = f"{live.url}/compat/polar/v1/events/ingest"

    def send(events: list[dict[str, object]], key: str = live.key) -> httpx.Response:
        return httpx.post(ingest, json={"events": events}, headers=bearer(key))

    def event(value: object, **fields: object) -> dict[str, object]:
        return {
            "name": "tokens",
            "external_customer_id": org,
            "external_id": str(fields.pop("external_id", uuid.uuid4())),
            "metadata": {"value": value},
            **fields,
        }

    answers = [
        send([event(3, external_id="p-1"), event(1)]),
        send([event(3, external_id="p-1")]),  # a repeat
        send([event(9, external_id="p-1")]),  # changed: a duplicate, as Polar counts it
        send([event("three")]),
        send([{"name": "tokens", "customer_id": str(uuid.uuid4()), "metadata": {"value": 1}}]),
        send([event(1, timestamp=1_700_000_000)]),
        send([event(1)], "bk_wrong"),
        send([event(1)], reader),
        httpx.post(ingest, content=b"{", headers=bearer(live.key)),
        httpx.get(f"{live.url}/compat/polar/v1/meters/", headers=bearer(live.key)),
    ]
    for response in answers:
        POLAR_INGEST.check(response)
    statuses = [response.status_code for response in answers]
    assert statuses == [200, 200, 200, 422, 422, 422, 401, 403, 422, 404]
    assert [r.json() for r in answers[:3]] == [
        {"inserted": 2, "duplicates": 0},
        {"inserted": 0, "duplicates": 1},
        {"inserted": 0, "duplicates": 1},
    ]
    assert live.used(org) == 4
