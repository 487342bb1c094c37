"""Usage ingestion (batches of events, each counted exactly once), and an org's events read
back, a page at a time or as a streamed CSV."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from json.encoder import encode_basestring_ascii as _quoted
from typing import Annotated

from fastapi import Query, Request, Response
from fastapi.responses import StreamingResponse

from billing_kernel.common.validation import ID_PATTERN_TEXT
from billing_kernel.usage.rules import EventPosition, RecordStatus, StoredEvent, UsageBatchResult
from billing_kernel.usage.schemas import (
    MAX_ECHO,
    UsageBatchIn,
    UsageBatchOut,
    UsageEventIn,
    UsageEventOut,
)
from billing_kernel.web.deps import KernelDep, OrgAdminOfPath, OrgId, UsageWriter
from billing_kernel.web.pagination import DEFAULT_LIMIT, Limit, Page, page_of
from billing_kernel.web.problems import problem_responses
from billing_kernel.web.responses import CSV_RESPONSE, csv_line, csv_response, next_url
from billing_kernel.web.routers import orgs_router, usage_router
from billing_kernel.web.schemas import QueryDateTime
from billing_kernel_sdk.fields import EVENT_NAME_PATTERN_TEXT, MAX_EVENT_NAME_LENGTH

router = usage_router()
INGEST_PATH = f"{router.prefix}/events"


@router.post(
    "/events",
    operation_id="recordUsageEvents",
    summary="Send a batch of usage events",
    response_model=UsageBatchOut,
    responses=problem_responses(401, 403, 422),
)
async def ingest_events(body: UsageBatchIn, key: UsageWriter, kernel: KernelDep) -> Response:
    """Up to 1,000 events; needs a service key with `usage:write`.

    **What is atomic.** A batch that is not valid JSON of this shape (a missing field, a
    wrong JSON type such as a quantity of `1.5` or `"10"`, more than 1,000 events) is refused
    whole with 422 and writes nothing. Otherwise each event is judged alone: it is
    `accepted` (counted), `duplicate` (its idempotency key was seen with the same payload;
    counted once already) or `refused` with an error code (`invalid_input`,
    `unknown_metric`, `unknown_event`, `org_not_found` when auto-creation is off,
    `no_default_plan` for an org never seen while no plan is the default,
    `idempotency_conflict`, `amount_out_of_bounds` when with it the org's month would come
    to more than an invoice may, 999,999,999,999.99).

    **Meters are independent.** A named event counts toward every metric that counts its
    name, whose filters admit it and that can read its property from it. A metric that
    cannot (the property missing, or not a whole number in range) skips it and is named in
    `not_counted_by`; the event still counts toward the others. Only a metric defined with
    `required: true` refuses such an event (`invalid_input` naming the metric and the
    property).
    The accepted events of a batch are committed together in one transaction; a refused
    event writes nothing. Resending a whole batch is always safe. Under load, concurrent
    requests may share a transaction and its commit; each is answered for its own events,
    as if it had come alone after those before it.
    """
    if key.org_id is not None:  # a key for one org: every event must be for that org
        for org_id in sorted({event.org_id for event in body.events}):
            key.require_org(org_id)
    result = await kernel.usage.record_request(body.events)
    return batch_answer(body.events, result)


def batch_answer(sent: Sequence[UsageEventIn], result: UsageBatchResult) -> Response:
    """The answer to a batch, UsageBatchOut as documented, written as JSON text directly:
    validating 1,000 result models again would cost more than the database work, and even
    a dict per event for `json.dumps` costs more than its text. Escaped to ASCII: a refused
    id is echoed as sent, even one that is not Unicode text (a lone UTF-16 surrogate)."""
    results = []
    for index, (event, outcome) in enumerate(zip(sent, result.outcomes, strict=True)):
        error = outcome.error
        judged = outcome.event
        skipped = () if error is not None or judged is None else judged.skipped
        results.append(
            f'{{"index":{index},"org_id":{_quoted(event.org_id[:MAX_ECHO])},'
            f'"idempotency_key":{_quoted(event.idempotency_key[:MAX_ECHO])},'
            f'"status":"{outcome.status.value}","error":'
            + (
                "null"
                if error is None
                else f'{{"code":{_quoted(error.code)},"detail":{_quoted(error.message)}}}'
            )
            + f',"created_org":{"true" if outcome.created_org else "false"},'
            f'"not_counted_by":[{",".join(_quoted(metric) for metric in skipped)}]}}'
        )
    body = (
        f'{{"accepted":{result.count(RecordStatus.ACCEPTED)},'
        f'"duplicates":{result.count(RecordStatus.DUPLICATE)},'
        f'"refused":{result.count(RecordStatus.REFUSED)},'
        f'"orgs_created":{sum(outcome.created_org for outcome in result.outcomes)},'
        f'"results":[{",".join(results)}]}}'
    )
    return Response(body.encode("ascii"), media_type="application/json")


events_router = orgs_router()

EventCursor = Annotated[
    str | None,
    Query(
        max_length=400,
        pattern=r"^[0-9]{1,16}\|[a-z0-9_]{0,64}\|[^\x00-\x1f\x7f-\x9f]+$",
        description="`next_cursor` of the previous page; leave out for the first page.",
    ),
]
MetricFilter = Annotated[
    str | None,
    Query(max_length=64, pattern=ID_PATTERN_TEXT, description="Only this metric's events."),
]
EventFilter = Annotated[
    str | None,
    Query(
        max_length=MAX_EVENT_NAME_LENGTH,
        pattern=EVENT_NAME_PATTERN_TEXT,
        description="Only events of this name (sent as `event`).",
    ),
]
Since = Annotated[
    QueryDateTime | None,
    Query(
        alias="from",
        description="Only events that occurred at or after this RFC 3339 time.",
        examples=["2026-11-01T00:00:00Z"],
    ),
]
Until = Annotated[
    QueryDateTime | None,
    Query(description="Only events that occurred before this RFC 3339 time."),
]


@events_router.get(
    "/{org_id}/events",
    operation_id="listOrgEvents",
    summary="An org's usage events, as recorded",
)
async def list_org_events(
    org_id: OrgId,
    _key: OrgAdminOfPath,
    kernel: KernelDep,
    metric: MetricFilter = None,
    event: EventFilter = None,
    from_: Since = None,
    to: Until = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: EventCursor = None,
) -> Page[UsageEventOut]:
    """Every usage event the org sent and the kernel counted, in the order they occurred
    (then by idempotency key), a page at a time (see *Pagination*): its metric, quantity,
    times, month, properties, name, and the invoice that billed it. A named event appears
    once per metric it counts toward; one no metric counts (the incumbents' protocols keep
    it), once with `metric` null and `quantity` 0, unless `metric` is asked for. Read from
    the deployment's read replica when it has one, so it may lag the writes by up to
    `BILLING_REPLICA_MAX_LAG_SECONDS`. Needs `billing:admin`; 404 for an unknown org or
    metric."""
    found = await kernel.from_replica().usage_reader.events(
        org_id,
        metric=metric,
        event=event,
        start=from_,
        end=to,
        after=_position(cursor),
        limit=limit + 1,
    )
    page, next_cursor = page_of(found, limit, _cursor)
    return Page[UsageEventOut](data=[UsageEventOut.of(e) for e in page], next_cursor=next_cursor)


@events_router.get(
    "/{org_id}/events.csv",
    operation_id="exportOrgEvents",
    summary="An org's usage events as CSV",
    response_class=StreamingResponse,
    responses=CSV_RESPONSE,
)
async def export_org_events(
    request: Request,
    org_id: OrgId,
    _key: OrgAdminOfPath,
    kernel: KernelDep,
    metric: MetricFilter = None,
    event: EventFilter = None,
    from_: Since = None,
    to: Until = None,
    cursor: EventCursor = None,
) -> StreamingResponse:
    """The events `listOrgEvents` selects as CSV with a header row, streamed a page at a
    time, at most 100,000 rows an answer: when there are more, a `Link` header (`rel="next"`)
    names the same export from where this one ends (its `cursor`). Values are made safe for
    spreadsheets (a leading `'` before =, +, -, @, a tab or a carriage return). Read from
    the read replica, as `listOrgEvents`. Needs `billing:admin`."""
    start, end, after = from_, to, _position(cursor)
    # 404s before the first byte; and the last row of this answer, if more follow it.
    edge = await kernel.from_replica().usage_reader.events(
        org_id,
        metric=metric,
        event=event,
        start=start,
        end=end,
        after=after,
        limit=2,
        offset=EXPORT_ROWS - 1,
    )
    through = edge[0].position if len(edge) == 2 else None
    follow = None if through is None else next_url(request, _cursor(edge[0]))

    async def rows() -> AsyncIterator[str]:
        yield csv_line(CSV_COLUMNS)
        async for page in kernel.from_replica().usage_reader.all_events(
            org_id,
            metric=metric,
            event=event,
            start=start,
            end=end,
            after=after,
            through=through,
        ):
            yield "".join(
                csv_line(
                    (
                        e.idempotency_key,
                        e.metric or "",
                        str(e.quantity),
                        e.occurred_at.isoformat(),
                        e.received_at.isoformat(),
                        e.invoice_id or "",
                        e.properties or "",
                        e.event or "",
                    )
                )
                for e in page
            )

    return csv_response(rows(), f"{org_id}-events.csv", next_url=follow)


EXPORT_ROWS = 100_000
"""The most rows one answer of `events.csv` holds; the rest follow its `Link`."""


CSV_COLUMNS = (
    "idempotency_key",
    "metric",
    "quantity",
    "occurred_at",
    "received_at",
    "invoice_id",
    "properties",
    "event",
)


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)


def _cursor(event: StoredEvent) -> str:
    """An event line's position: its time in microseconds since 1970, its metric (a metric
    key has no `|`) and its key."""
    occurred, key, metric = event.position
    return f"{(occurred - EPOCH) // MICROSECOND}|{metric}|{key}"


def _position(cursor: str | None) -> EventPosition | None:
    """The position a cursor names (any the pattern admits: 16 digits stay within the
    years a datetime holds)."""
    if cursor is None:
        return None
    micros, metric, key = cursor.split("|", 2)
    return EPOCH + int(micros) * MICROSECOND, key, metric
