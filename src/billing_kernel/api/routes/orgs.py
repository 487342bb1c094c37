"""Orgs and their members, pushed by the product's backend (a `billing:admin` key)."""

from __future__ import annotations

from contextlib import suppress
from typing import Annotated

from fastapi import APIRouter, Path, Response

from billing_kernel.api.deps import OrgAdminOfPath, OrgId, ServiceDep
from billing_kernel.api.problems import problem_responses
from billing_kernel.api.schemas import MemberIn, MemberOut, MembersOut, OrgIn, OrgOut
from billing_kernel.domain.usage import ID_PATTERN_TEXT, MAX_ID_LENGTH
from billing_kernel.errors import MemberNotFound

router = APIRouter(
    prefix="/api/v1/orgs", tags=["orgs"], responses=problem_responses(401, 403, 404, 422)
)

UserId = Annotated[
    str,
    Path(description="The product's user id.", max_length=MAX_ID_LENGTH, pattern=ID_PATTERN_TEXT),
]


@router.put("/{org_id}", summary="Create or update an org", responses=problem_responses(409))
async def put_org(org_id: OrgId, body: OrgIn, key: OrgAdminOfPath, service: ServiceDep) -> OrgOut:
    """Creates the org (default plan, in trial) if it is new; sets its name, and its plan when
    `plan_slug` is given. Idempotent."""
    await service.put_org(org_id, name=body.name, plan_slug=body.plan_slug)
    return await get_org(org_id, key, service)


@router.get("/{org_id}", summary="An org and its billing state")
async def get_org(org_id: OrgId, key: OrgAdminOfPath, service: ServiceDep) -> OrgOut:
    name, state = await service.get_org(org_id)
    return OrgOut(
        org_id=org_id,
        name=name,
        plan_slug=state.plan_slug,
        status=state.status,
        trial_ends_at=state.trial_ends_at,
    )


@router.get("/{org_id}/members", summary="An org's members")
async def list_members(org_id: OrgId, key: OrgAdminOfPath, service: ServiceDep) -> MembersOut:
    members = await service.list_org_members(org_id)
    return MembersOut(
        org_id=org_id,
        seats=len(members),
        members=[MemberOut(user_id=user_id, role=role) for user_id, role in members],
    )


@router.put("/{org_id}/members/{user_id}", summary="Add a member or change their role")
async def put_member(
    org_id: OrgId, user_id: UserId, body: MemberIn, key: OrgAdminOfPath, service: ServiceDep
) -> MembersOut:
    """Idempotent. The org must exist. Seats follow membership, and the month's peak is kept."""
    await service.add_org_member(org_id, user_id, body.role, email=body.email)
    return await list_members(org_id, key, service)


@router.delete(
    "/{org_id}/members/{user_id}",
    summary="Remove a member",
    status_code=204,
    response_class=Response,
)
async def delete_member(
    org_id: OrgId, user_id: UserId, key: OrgAdminOfPath, service: ServiceDep
) -> Response:
    """Idempotent: removing someone who is not a member also answers 204."""
    with suppress(MemberNotFound):
        await service.remove_org_member(org_id, user_id)
    return Response(status_code=204)
