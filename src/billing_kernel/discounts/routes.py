"""Coupons: defined and archived by the operator, applied to orgs and removed."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Response

from billing_kernel.discounts.schemas import (
    CouponIn,
    CouponOut,
    CouponsOut,
    RedemptionOut,
    RedemptionsOut,
)
from billing_kernel.web.deps import DeploymentAdmin, KernelDep, OrgAdminOfPath, OrgId
from billing_kernel.web.problems import problem_responses
from billing_kernel.web.routers import billing_router, orgs_router

router = billing_router()
own_router = orgs_router()

Code = Annotated[
    str,
    Path(
        description="A coupon's code: 1 to 64 letters, digits, _ and -.",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$",
    ),
]


@router.post(
    "/coupons",
    operation_id="createCoupon",
    summary="Define a coupon",
    status_code=201,
    responses=problem_responses(403, 409),
)
async def create_coupon(
    body: CouponIn, response: Response, _key: DeploymentAdmin, kernel: KernelDep
) -> CouponOut:
    """A percentage or an amount off the invoices of the orgs it is applied to, for one
    month, some or every month (docs/pricing.md#discounts). 201 when defined; the same
    code and terms again answer it with 200; 409 `coupon_exists` for the code with other
    terms (a coupon's terms never change). A `billing:admin` key valid for every org."""
    coupon, created = await kernel.discounts.create(body.coupon())
    response.status_code = 201 if created else 200
    return CouponOut.of(coupon)


@router.get(
    "/coupons",
    operation_id="listCoupons",
    summary="List the coupons",
    responses=problem_responses(403),
)
async def list_coupons(_key: DeploymentAdmin, kernel: KernelDep) -> CouponsOut:
    """Every coupon, archived ones too, by code, with how many orgs each was applied to."""
    return CouponsOut(coupons=[CouponOut.of(c) for c in await kernel.discounts.list_coupons()])


@router.get(
    "/coupons/{code}",
    operation_id="getCoupon",
    summary="Read a coupon",
    responses=problem_responses(403, 404),
)
async def get_coupon(code: Code, _key: DeploymentAdmin, kernel: KernelDep) -> CouponOut:
    """The coupon and how many orgs it was applied to."""
    return CouponOut.of(await kernel.discounts.get(code))


@router.post(
    "/coupons/{code}/archive",
    operation_id="archiveCoupon",
    summary="Stop a coupon from being applied to more orgs",
    responses=problem_responses(403, 404),
)
async def archive_coupon(code: Code, _key: DeploymentAdmin, kernel: KernelDep) -> CouponOut:
    """No org can be given it from now; those it was applied to keep it. Idempotent."""
    return CouponOut.of(await kernel.discounts.archive(code))


@own_router.get(
    "/{org_id}/coupons",
    operation_id="listOrgCoupons",
    summary="The coupons applied to an org",
    responses=problem_responses(403, 404),
)
async def list_org_coupons(org_id: OrgId, key: OrgAdminOfPath, kernel: KernelDep) -> RedemptionsOut:
    """Removed ones too, in the order they were applied. Needs `billing:admin`."""
    found = await kernel.discounts.redemptions(org_id)
    return RedemptionsOut(org_id=org_id, coupons=[RedemptionOut.of(r) for r in found])


@own_router.put(
    "/{org_id}/coupons/{code}",
    operation_id="applyCoupon",
    summary="Apply a coupon to an org",
    status_code=201,
    responses=problem_responses(403, 404, 409),
)
async def apply_coupon(
    org_id: OrgId, code: Code, response: Response, key: OrgAdminOfPath, kernel: KernelDep
) -> RedemptionOut:
    """From now: it takes from the invoices of the months it covers, starting with this
    one, in the order coupons were applied to the org, before its credit balance is drawn.
    201 when applied; 200 when it already was (a retry). 409 `coupon_not_applicable`, saying
    why, for a coupon archived, past its `redeem_by`, at its `max_redemptions` (of two orgs
    racing for the last one, one gets it), in a currency the org is not billed in, or
    applied to the org and removed before. Needs `billing:admin`."""
    redemption, created = await kernel.discounts.apply(org_id, code)
    response.status_code = 201 if created else 200
    return RedemptionOut.of(redemption)


@own_router.delete(
    "/{org_id}/coupons/{code}",
    operation_id="removeCoupon",
    summary="Remove a coupon from an org",
    responses=problem_responses(403, 404),
)
async def remove_coupon(
    org_id: OrgId, code: Code, key: OrgAdminOfPath, kernel: KernelDep
) -> RedemptionOut:
    """From now: invoices made after no longer take it off (those made before keep what
    they took). Idempotent; 404 for a coupon never applied to the org. Needs
    `billing:admin`."""
    return RedemptionOut.of(await kernel.discounts.remove(org_id, code))
