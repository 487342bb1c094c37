"""Coupons: defined and archived by the operator, applied to orgs and removed, and the ones
that discount an org's invoice of a period (`in_effect`), read by the invoices that take
them off. A coupon is applied only from the state that was checked: its count of orgs moves
by a statement that checks, on the row it updates, that it may still be applied."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime

from billing_kernel.common.periods import BillingPeriod
from billing_kernel.db.unit_of_work import Transactions, UnitOfWork
from billing_kernel.discounts.repository import DiscountRepository
from billing_kernel.discounts.rules import Coupon, Kind, Redemption, check_coupon, in_effect
from billing_kernel.errors import CouponExists, CouponNotApplicable, CouponNotFound
from billing_kernel.orgs.service import OrgService
from billing_kernel.plans.service import PlanService
from billing_kernel.subscriptions.service.lifecycle import SubscriptionService


class DiscountService:
    def __init__(
        self,
        tx: Transactions,
        clock: Callable[[], datetime],
        *,
        plans: PlanService,
        orgs: OrgService,
        subscriptions: SubscriptionService,
    ) -> None:
        self._tx = tx
        self._clock = clock
        self._plans = plans
        self._orgs = orgs
        self._subscriptions = subscriptions

    async def create(self, coupon: Coupon, uow: UnitOfWork | None = None) -> tuple[Coupon, bool]:
        """Define `coupon` (checked whole: InvalidInput names the wrong part): the coupon
        stored and whether this call stored it. The same code and terms again answer the
        coupon stored; the same code with other terms is CouponExists."""
        checked = check_coupon(replace(coupon, created_at=self._clock(), redemptions=0))
        async with self._tx.begin(uow) as unit:
            repo = DiscountRepository(unit)
            created = await repo.insert(checked)
            stored = await repo.get(checked.code)
            assert stored is not None
        if not created and stored.terms() != checked.terms():
            raise CouponExists(
                f"coupon {checked.code} exists with other terms ({stored.describe()}); "
                "a coupon's terms never change: define one with another code",
                code=checked.code,
            )
        return stored, created

    async def get(self, code: str, uow: UnitOfWork | None = None) -> Coupon:
        """The coupon; CouponNotFound otherwise."""
        async with self._tx.read(uow) as unit:
            found = await DiscountRepository(unit).get(code)
        if found is None:
            raise CouponNotFound(f"no coupon {code!r}", code=code)
        return found

    async def list_coupons(self, uow: UnitOfWork | None = None) -> list[Coupon]:
        """Every coupon, archived ones too, by code."""
        async with self._tx.read(uow) as unit:
            return await DiscountRepository(unit).list_coupons()

    async def archive(self, code: str, uow: UnitOfWork | None = None) -> Coupon:
        """Stop the coupon from being applied to more orgs (those it was applied to keep
        it); idempotent. CouponNotFound for no such coupon."""
        async with self._tx.begin(uow) as unit:
            await self.get(code, unit)
            await DiscountRepository(unit).archive(code, self._clock())
            return await self.get(code, unit)

    async def apply(
        self, org_id: str, code: str, uow: UnitOfWork | None = None
    ) -> tuple[Redemption, bool]:
        """Apply the coupon to the org from now: the redemption and whether this call made
        it (applied and not removed, a repeat answers it as it is). OrgNotFound,
        CouponNotFound; CouponNotApplicable, saying why, for a coupon archived, past its
        last day, at its limit of orgs (the loser of a race for the last one), in another
        currency than the org's plan, or applied to the org and removed before."""
        async with self._tx.begin(uow) as unit:
            # Held as a close holds it: an invoice is made wholly before or wholly after,
            # and the times say which (`rules.Redemption.discounts`).
            await self._orgs.lock(org_id, unit)
            coupon = await self.get(code, unit)
            repo = DiscountRepository(unit)
            now = self._clock()
            if not await repo.insert_redemption(org_id, code, now):
                before = _one(await repo.redemptions(org_id), code)
                if before.removed_at is not None:
                    raise CouponNotApplicable(
                        f"coupon {code} was applied to {org_id} and removed on "
                        f"{before.removed_at.isoformat()}: a coupon applies to an org once",
                        code=code,
                    )
                return before, False
            if coupon.kind is Kind.AMOUNT:
                state = await self._subscriptions.billing_state(org_id, unit)
                plan = await self._plans.get(state.plan_slug, unit, version=state.plan_version)
                if plan.currency != coupon.currency:
                    raise CouponNotApplicable(
                        f"coupon {code} takes {coupon.off}, but {org_id} is billed in "
                        f"{plan.currency}",
                        code=code,
                    )
            if not await repo.take_redemption(code, now):
                latest = await self.get(code, unit)
                why = latest.why_not_redeemable(now) or f"coupon {code} may not be applied now"
                raise CouponNotApplicable(why, code=code)
            return _one(await repo.redemptions(org_id), code), True

    async def remove(self, org_id: str, code: str, uow: UnitOfWork | None = None) -> Redemption:
        """Remove the coupon from the org from now: invoices made after no longer take it
        off (those made before keep it); idempotent. CouponNotFound when it was never
        applied to the org."""
        async with self._tx.begin(uow) as unit:
            await self._orgs.lock(org_id, unit)  # as `apply` does
            repo = DiscountRepository(unit)
            await repo.remove_redemption(org_id, code, self._clock())
            found = [r for r in await repo.redemptions(org_id) if r.coupon.code == code]
        if not found:
            raise CouponNotFound(f"coupon {code!r} was never applied to {org_id}", code=code)
        return found[0]

    async def redemptions(self, org_id: str, uow: UnitOfWork | None = None) -> list[Redemption]:
        """The coupons applied to the org, removed ones too, in the order they were
        applied. OrgNotFound for an unknown org."""
        async with self._tx.read(uow) as unit:
            await self._orgs.require(org_id, unit)
            return await DiscountRepository(unit).redemptions(org_id)

    async def in_effect(
        self, org_id: str, period: BillingPeriod, at: datetime, unit: UnitOfWork
    ) -> list[Coupon]:
        """The coupons that discount the org's invoice of `period` made at `at`, in the
        order they apply (`rules.in_effect`)."""
        return in_effect(await DiscountRepository(unit).redemptions(org_id), period, at)

    async def verify(self, unit: UnitOfWork) -> list[str]:
        """Each coupon counts the orgs it was applied to, within its limit, none applied
        after its last day: every difference, in words."""
        repo = DiscountRepository(unit)
        counts = await repo.redemption_counts()
        found = []
        for coupon in await repo.list_coupons():
            applied = counts.get(coupon.code, 0)
            if coupon.redemptions != applied:
                found.append(
                    f"coupon {coupon.code}: counts {coupon.redemptions} orgs, applied to {applied}"
                )
            if coupon.max_redemptions is not None and applied > coupon.max_redemptions:
                found.append(
                    f"coupon {coupon.code}: applied to {applied} orgs, "
                    f"beyond its limit of {coupon.max_redemptions}"
                )
        for org_id, code, at in await repo.redeemed_late():
            found.append(
                f"coupon {code}: applied to {org_id} on {at.isoformat()}, after its last day"
            )
        return found


def _one(redemptions: list[Redemption], code: str) -> Redemption:
    return next(r for r in redemptions if r.coupon.code == code)
