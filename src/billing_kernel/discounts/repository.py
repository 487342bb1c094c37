"""Coupons (`coupons`) and the orgs they are applied to (`coupon_redemptions`)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, select, update

from billing_kernel.db.database import upsert
from billing_kernel.db.tables import coupon_redemptions, coupons
from billing_kernel.db.unit_of_work import UnitOfWork
from billing_kernel.discounts.rules import Coupon, Duration, Kind, Redemption


def _keys(text: str | None) -> tuple[str, ...] | None:
    return None if text is None else tuple(json.loads(text))


def _text(keys: tuple[str, ...] | None) -> str | None:
    return None if keys is None else json.dumps(list(keys))


def _coupon(row: Any) -> Coupon:
    return Coupon(
        code=row.code,
        name=row.name,
        kind=Kind(row.kind),
        value=row.value,
        duration=Duration(row.duration),
        currency=row.currency,
        periods=row.periods,
        plans=_keys(row.plans),
        applies_to=_keys(row.applies_to),
        max_redemptions=row.max_redemptions,
        redeem_by=row.redeem_by,
        created_at=row.created_at,
        archived_at=row.archived_at,
        redemptions=row.redemptions,
    )


class DiscountRepository:
    def __init__(self, uow: UnitOfWork) -> None:
        self._conn = uow.connection

    async def insert(self, coupon: Coupon) -> bool:
        """Store `coupon` unless one with its code exists: whether it was stored."""
        stmt = upsert(self._conn, coupons).values(
            code=coupon.code,
            name=coupon.name,
            kind=coupon.kind.value,
            value=coupon.value,
            currency=coupon.currency,
            duration=coupon.duration.value,
            periods=coupon.periods,
            plans=_text(coupon.plans),
            applies_to=_text(coupon.applies_to),
            max_redemptions=coupon.max_redemptions,
            redeem_by=coupon.redeem_by,
            redemptions=0,
            created_at=coupon.created_at,
        )
        result = await self._conn.execute(stmt.on_conflict_do_nothing(index_elements=["code"]))
        return bool(result.rowcount)

    async def get(self, code: str) -> Coupon | None:
        row = (await self._conn.execute(select(coupons).where(coupons.c.code == code))).first()
        return None if row is None else _coupon(row)

    async def list_coupons(self) -> list[Coupon]:
        rows = await self._conn.execute(select(coupons).order_by(coupons.c.code))
        return [_coupon(row) for row in rows]

    async def archive(self, code: str, now: datetime) -> None:
        c = coupons.c
        await self._conn.execute(
            update(coupons).where(c.code == code, c.archived_at.is_(None)).values(archived_at=now)
        )

    async def take_redemption(self, code: str, now: datetime) -> bool:
        """Count one more org for the coupon, only if it may still be applied at `now` (not
        archived, not past its last day, below its limit), checked on the row the statement
        updates: whether it was counted."""
        c = coupons.c
        result = await self._conn.execute(
            update(coupons)
            .where(
                c.code == code,
                c.archived_at.is_(None),
                or_(c.redeem_by.is_(None), c.redeem_by >= now),
                or_(c.max_redemptions.is_(None), c.redemptions < c.max_redemptions),
            )
            .values(redemptions=c.redemptions + 1)
        )
        return bool(result.rowcount)

    async def insert_redemption(self, org_id: str, code: str, now: datetime) -> bool:
        """Apply the coupon to the org unless it was applied to it before: whether it was."""
        stmt = upsert(self._conn, coupon_redemptions).values(
            org_id=org_id, coupon=code, redeemed_at=now
        )
        result = await self._conn.execute(
            stmt.on_conflict_do_nothing(index_elements=["org_id", "coupon"])
        )
        return bool(result.rowcount)

    async def remove_redemption(self, org_id: str, code: str, now: datetime) -> bool:
        """Mark the coupon removed from the org, if it is applied and not yet removed."""
        r = coupon_redemptions.c
        result = await self._conn.execute(
            update(coupon_redemptions)
            .where(r.org_id == org_id, r.coupon == code, r.removed_at.is_(None))
            .values(removed_at=now)
        )
        return bool(result.rowcount)

    async def redemptions(self, org_id: str) -> list[Redemption]:
        """The coupons applied to the org, removed ones too, in the order they were applied."""
        r = coupon_redemptions.c
        rows = await self._conn.execute(
            select(coupon_redemptions, coupons)
            .join(coupons, coupons.c.code == r.coupon)
            .where(r.org_id == org_id)
            .order_by(r.redeemed_at, r.coupon)
        )
        return [
            Redemption(row.org_id, _coupon(row), row.redeemed_at, row.removed_at) for row in rows
        ]

    async def redemption_counts(self) -> dict[str, int]:
        """How many orgs each coupon applied to any has been applied to, by its redemptions."""
        r = coupon_redemptions.c
        rows = await self._conn.execute(select(r.coupon, func.count()).group_by(r.coupon))
        return {code: int(count) for code, count in rows}

    async def redeemed_late(self) -> list[tuple[str, str, datetime]]:
        """Redemptions made after their coupon's last day: (org, code, when)."""
        r, c = coupon_redemptions.c, coupons.c
        rows = await self._conn.execute(
            select(r.org_id, r.coupon, r.redeemed_at)
            .join(coupons, c.code == r.coupon)
            .where(c.redeem_by.is_not(None), r.redeemed_at > c.redeem_by)
            .order_by(r.org_id, r.coupon)
        )
        return [(org, code, at) for org, code, at in rows]
