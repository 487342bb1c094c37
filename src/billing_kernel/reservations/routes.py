"""Reservations (`/api/v1/usage/reservations`): hold units for work in progress, then
commit the usage it turned out to be, or release them."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Response, status

from billing_kernel.auth.rules import ApiKeyCaller, Scope
from billing_kernel.quota.routes import REPLAYED_HEADER
from billing_kernel.quota.schemas import CheckOut
from billing_kernel.reservations.rules import ID_PATTERN_TEXT
from billing_kernel.reservations.schemas import CommitIn, ReservationIn, ReservationOut
from billing_kernel.web.deps import KernelDep, UsageWriter, api_key_with
from billing_kernel.web.problems import problem_responses
from billing_kernel.web.routers import links_to, usage_router

router = usage_router()

ReservationId = Annotated[str, Path(description="`rsv_...`", pattern=ID_PATTERN_TEXT)]
ReservationReader = Annotated[
    ApiKeyCaller, Depends(api_key_with(Scope.USAGE_WRITE, Scope.BILLING_ADMIN))
]


@router.post(
    "/reservations",
    operation_id="reserveUsage",
    summary="Hold units against a limit for work in progress",
    status_code=status.HTTP_201_CREATED,
    responses={
        **problem_responses(401, 403, 404, 409, 422),
        **links_to(
            201,
            "reservation_id",
            "id",
            "getReservation",
            "commitReservation",
            "releaseReservation",
        ),
    },
)
async def reserve(
    body: ReservationIn, key: UsageWriter, kernel: KernelDep, response: Response
) -> ReservationOut:
    """Decide as a consume does (`POST /api/v1/billing/org/check`) for `estimate` units and,
    if allowed, hold them in the same atomic step: they count against the limit for every
    other caller until the reservation is committed, released, or its `ttl_seconds` end.
    Of concurrent reservations that together ask for more than is left, only as many as fit
    are held. A refused reservation is an answer too (`status: refused`, with the
    decision's `reason` and `message`). A retry with the same `idempotency_key` is answered
    with the same reservation, in its state now (header `Idempotent-Replayed: true`).
    Needs a service key with `usage:write`."""
    key.require_org(body.org_id)
    made = await kernel.quota.reserve(
        body.org_id,
        body.metric,
        body.estimate,
        idempotency_key=body.idempotency_key,
        ttl_seconds=body.ttl_seconds,
    )
    if made.replayed:
        response.headers[REPLAYED_HEADER] = "true"
    return ReservationOut.of(made.reservation, kernel.now(), CheckOut.of(made.decision))


@router.post(
    "/reservations/{reservation_id}/commit",
    operation_id="commitReservation",
    summary="Record the usage a reservation's work turned out to be",
    responses=problem_responses(401, 403, 404, 409, 422),
)
async def commit(
    reservation_id: ReservationId, body: CommitIn, key: UsageWriter, kernel: KernelDep
) -> ReservationOut:
    """Record `quantity` units as usage (a usage event under the reservation's idempotency
    key, in the month it was made in) and give back what it holds, in one step. The usage
    is recorded in full, also beyond the estimate or the limit, and also after the TTL
    ended: the work happened. A retry with the same quantity answers the same; another
    quantity is 409 `idempotency_conflict`; a released or refused reservation, 409
    `reservation_settled`. Needs a service key with `usage:write`."""
    committed = await kernel.reservations.commit(reservation_id, body.quantity, org_id=key.org_id)
    return ReservationOut.of(committed, kernel.now())


@router.post(
    "/reservations/{reservation_id}/release",
    operation_id="releaseReservation",
    summary="Give back what a reservation holds",
    responses=problem_responses(401, 403, 404, 409, 422),
)
async def release(
    reservation_id: ReservationId, key: UsageWriter, kernel: KernelDep
) -> ReservationOut:
    """Give the held units back, recording no usage. Releasing a reservation that holds
    nothing (released, expired, refused) answers it as it is; a committed one is 409
    `reservation_settled`. Needs a service key with `usage:write`."""
    released = await kernel.reservations.release(reservation_id, org_id=key.org_id)
    return ReservationOut.of(released, kernel.now())


@router.get(
    "/reservations/{reservation_id}",
    operation_id="getReservation",
    summary="A reservation and its state",
    responses=problem_responses(401, 403, 404, 422),
)
async def get_reservation(
    reservation_id: ReservationId, key: ReservationReader, kernel: KernelDep
) -> ReservationOut:
    """Needs a service key with `usage:write` or `billing:admin`."""
    found = await kernel.reservations.get(reservation_id, org_id=key.org_id)
    return ReservationOut.of(found, kernel.now())
