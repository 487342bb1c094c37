"""An org's members, pushed by the product's backend (a `billing:admin` key). Seats follow
membership."""

from __future__ import annotations

from contextlib import suppress
from typing import Annotated

from fastapi import Path, Response

from billing_kernel.common.validation import ID_PATTERN_TEXT, MAX_ID_LENGTH
from billing_kernel.errors import MemberNotFound
from billing_kernel.members.schemas import MemberIn, MemberOut, MembersOut
from billing_kernel.web.deps import KernelDep, OrgAdminOfPath, OrgId
from billing_kernel.web.routers import orgs_router

router = orgs_router()

UserId = Annotated[
    str,
    Path(description="The product's user id.", max_length=MAX_ID_LENGTH, pattern=ID_PATTERN_TEXT),
]


@router.get("/{org_id}/members", operation_id="listOrgMembers", summary="An org's members")
async def list_members(org_id: OrgId, key: OrgAdminOfPath, kernel: KernelDep) -> MembersOut:
    members = await kernel.members.of_org(org_id)
    return MembersOut(
        org_id=org_id,
        seats=len(members),
        members=[MemberOut(user_id=user_id, role=role) for user_id, role in members],
    )


@router.put(
    "/{org_id}/members/{user_id}",
    operation_id="putOrgMember",
    summary="Add a member or change their role",
)
async def put_member(
    org_id: OrgId, user_id: UserId, body: MemberIn, key: OrgAdminOfPath, kernel: KernelDep
) -> MembersOut:
    """Idempotent. The org must exist. Seats follow membership, and the month's peak is kept."""
    await kernel.members.add(org_id, user_id, body.role, email=body.email)
    return await list_members(org_id, key, kernel)


@router.delete(
    "/{org_id}/members/{user_id}",
    operation_id="removeOrgMember",
    summary="Remove a member",
    status_code=204,
    response_class=Response,
)
async def delete_member(
    org_id: OrgId, user_id: UserId, key: OrgAdminOfPath, kernel: KernelDep
) -> Response:
    """Idempotent: removing someone who is not a member also answers 204."""
    with suppress(MemberNotFound):
        await kernel.members.remove(org_id, user_id)
    return Response(status_code=204)
