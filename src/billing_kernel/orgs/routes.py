"""Orgs, pushed by the product's backend (a `billing:admin` key)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query

from billing_kernel.common.validation import ID_PATTERN_TEXT
from billing_kernel.orgs.rules import BillingStatus
from billing_kernel.orgs.schemas import AliasesIn, AliasesOut, OrgIn, OrgOut
from billing_kernel.web.deps import KernelDep, OrgAdmin, OrgAdminOfPath, OrgId
from billing_kernel.web.pagination import (
    DEFAULT_LIMIT,
    Cursor,
    Limit,
    Page,
    page_of,
)
from billing_kernel.web.problems import problem_responses
from billing_kernel.web.routers import orgs_router

router = orgs_router()


@router.put(
    "/{org_id}",
    operation_id="putOrg",
    summary="Create or update an org",
    responses=problem_responses(409),
)
async def put_org(org_id: OrgId, body: OrgIn, key: OrgAdminOfPath, kernel: KernelDep) -> OrgOut:
    """Creates the org (default plan, in trial) if it is new; sets its name, its plan when
    `plan_slug` is given, and its billing status when `status` is. Idempotent."""
    async with kernel.transaction() as uow:
        await kernel.orgs.create(org_id, name=body.name, plan_slug=body.plan_slug, uow=uow)
        await kernel.subscriptions.subscribe(
            org_id, plan_slug=body.plan_slug, status=body.status, uow=uow
        )
    return await get_org(org_id, key, kernel)


@router.get("/{org_id}", operation_id="getOrg", summary="An org and its billing state")
async def get_org(org_id: OrgId, key: OrgAdminOfPath, kernel: KernelDep) -> OrgOut:
    async with kernel.transaction() as uow:
        await kernel.subscriptions.billing_state(org_id, uow)  # a change due takes effect
        return OrgOut.of(await kernel.orgs.get(org_id, uow))


@router.get("", operation_id="listOrgs", summary="List orgs")
async def list_orgs(
    key: OrgAdmin,
    kernel: KernelDep,
    plan: Annotated[
        str | None,
        Query(max_length=64, pattern=ID_PATTERN_TEXT, description="Only orgs on this plan."),
    ] = None,
    status: Annotated[BillingStatus | None, Query(description="Only orgs in this status.")] = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Page[OrgOut]:
    """Every org, in org id order, a page at a time (see *Pagination*); each says how it was
    created. A key restricted to one org sees only that org. Needs `billing:admin`."""
    rows = await kernel.orgs.list_orgs(
        after=cursor, limit=limit + 1, plan_slug=plan, status=status, only=key.org_id
    )
    orgs, next_cursor = page_of(rows, limit, lambda org: org.org_id)
    return Page[OrgOut](data=[OrgOut.of(org) for org in orgs], next_cursor=next_cursor)


@router.get(
    "/{org_id}/aliases",
    operation_id="getOrgAliases",
    summary="The other names an org goes by",
)
async def get_aliases(org_id: OrgId, _key: OrgAdminOfPath, kernel: KernelDep) -> AliasesOut:
    """The ids (such as another billing system's customer ids) that name this org in the
    compatible protocols. Needs `billing:admin`; 404 for an unknown org."""
    return AliasesOut(org_id=org_id, aliases=await kernel.orgs.aliases(org_id))


@router.put(
    "/{org_id}/aliases",
    operation_id="putOrgAliases",
    summary="Set the other names an org goes by",
    responses=problem_responses(409),
)
async def put_aliases(
    org_id: OrgId, body: AliasesIn, _key: OrgAdminOfPath, kernel: KernelDep
) -> AliasesOut:
    """Replace the org's aliases. An event that a compatible protocol sends for an alias
    counts for this org; any other id names the org of that id. 409 `alias_taken` if an
    alias is another org's alias or id (nothing changes); 404 for an unknown org. Needs
    `billing:admin`."""
    return AliasesOut(org_id=org_id, aliases=await kernel.orgs.set_aliases(org_id, body.aliases))
