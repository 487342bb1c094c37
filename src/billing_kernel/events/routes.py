"""The event log (`/api/v1/events`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from billing_kernel.common.validation import ID_PATTERN_TEXT, MAX_ID_LENGTH
from billing_kernel.events.rules import EventType
from billing_kernel.events.schemas import EventOut
from billing_kernel.web.deps import KernelDep, OrgAdmin
from billing_kernel.web.pagination import DEFAULT_LIMIT, Limit, Page, SequenceCursor, page_of
from billing_kernel.web.problems import problem_responses

events_router = APIRouter(
    prefix="/api/v1/events", tags=["events"], responses=problem_responses(401, 403, 422)
)


@events_router.get("", operation_id="listEvents", summary="The event log")
async def list_events(
    key: OrgAdmin,
    kernel: KernelDep,
    org_id: Annotated[
        str | None,
        Query(
            max_length=MAX_ID_LENGTH,
            pattern=ID_PATTERN_TEXT,
            description="Only this org's events (a key restricted to one org: its own, "
            "by default).",
        ),
    ] = None,
    event_types: Annotated[
        list[EventType] | None, Query(alias="type", description="Only events of these types.")
    ] = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: SequenceCursor = None,
) -> Page[EventOut]:
    """Every event the kernel emitted (`usage.threshold_crossed`,
    `usage.threshold_resolved`, `quota.blocked`, the `payment.*` an org is told of; for a
    key valid for every org also the operators' `invoice.close_failed` and
    `payment.refund_due`, each about an org and listed with its events), newest first, a
    page at a time (see *Pagination*), each exactly as the channels deliver it. Needs
    `billing:admin`."""
    if org_id is None:
        org_id = key.org_id
    else:
        key.require_org(org_id)
    rows = await kernel.events.events(
        org_id=org_id,
        operators_too=key.org_id is None,
        types=event_types or (),
        after=None if cursor is None else int(cursor),
        limit=limit + 1,
    )
    found, next_cursor = page_of(rows, limit, lambda row: str(row[0]))
    return Page[EventOut](data=[EventOut.of(event) for _, event in found], next_cursor=next_cursor)
