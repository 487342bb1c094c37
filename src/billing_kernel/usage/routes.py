"""Usage ingestion: batches of events, each counted exactly once."""

from __future__ import annotations

from billing_kernel.usage.rules import RecordStatus
from billing_kernel.usage.schemas import MAX_ECHO, UsageBatchIn, UsageBatchOut
from billing_kernel.web.deps import KernelDep, UsageWriter
from billing_kernel.web.problems import problem_responses
from billing_kernel.web.responses import EscapedJSONResponse
from billing_kernel.web.routers import usage_router

router = usage_router()


@router.post(
    "/events",
    operation_id="recordUsageEvents",
    summary="Send a batch of usage events",
    response_model=UsageBatchOut,
    responses=problem_responses(401, 403, 422),
)
async def ingest_events(
    body: UsageBatchIn, key: UsageWriter, kernel: KernelDep
) -> EscapedJSONResponse:
    """Up to 1,000 events; needs a service key with `usage:write`.

    **What is atomic.** A batch that is not valid JSON of this shape (a missing field, a
    wrong JSON type such as a quantity of `1.5` or `"10"`, more than 1,000 events) is refused
    whole with 422 and writes nothing. Otherwise each event is judged alone: it is
    `accepted` (counted), `duplicate` (its idempotency key was seen with the same payload;
    counted once already) or `refused` with an error code (`invalid_input`,
    `unknown_metric`, `org_not_found` when auto-creation is off, `idempotency_conflict`).
    The accepted events of a batch are committed together in one transaction; a refused
    event writes nothing. Resending a whole batch is always safe.
    """
    if key.org_id is not None:  # a key for one org: every event must be for that org
        for org_id in sorted({event.org_id for event in body.events}):
            key.require_org(org_id)
    result = await kernel.usage.record_batch(body.events)
    # Built as plain JSON: validating 1,000 result models again would cost more than the
    # database work. The shape is UsageBatchOut, as documented. Escaped: a refused id is
    # echoed as sent, even one that is not Unicode text.
    return EscapedJSONResponse(
        {
            "accepted": result.count(RecordStatus.ACCEPTED),
            "duplicates": result.count(RecordStatus.DUPLICATE),
            "refused": result.count(RecordStatus.REFUSED),
            "orgs_created": sum(outcome.created_org for outcome in result.outcomes),
            "results": [
                {
                    "index": index,
                    "org_id": sent.org_id[:MAX_ECHO],
                    "idempotency_key": sent.idempotency_key[:MAX_ECHO],
                    "status": outcome.status.value,
                    "error": None
                    if outcome.error is None
                    else {"code": outcome.error.code, "detail": outcome.error.message},
                    "created_org": outcome.created_org,
                }
                for index, (sent, outcome) in enumerate(
                    zip(body.events, result.outcomes, strict=True)
                )
            ],
        }
    )
