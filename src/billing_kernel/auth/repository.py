"""API keys, as stored (the secret only as its hash)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Row, select, update

from billing_kernel.auth.rules import ApiKey, Scope
from billing_kernel.db.tables import api_keys
from billing_kernel.db.unit_of_work import UnitOfWork


class ApiKeyRepository:
    def __init__(self, uow: UnitOfWork) -> None:
        self._conn = uow.connection

    async def add(self, key: ApiKey) -> None:
        await self._conn.execute(
            api_keys.insert().values(
                key_id=key.key_id,
                secret_hash=key.secret_hash,
                scopes=" ".join(sorted(key.scopes)),
                org_id=key.org_id,
                name=key.name,
                created_at=key.created_at,
                revoked_at=key.revoked_at,
            )
        )

    async def get(self, key_id: str) -> ApiKey | None:
        row = (
            await self._conn.execute(select(api_keys).where(api_keys.c.key_id == key_id))
        ).first()
        return None if row is None else _to_key(row)

    async def list_all(self) -> list[ApiKey]:
        result = await self._conn.execute(select(api_keys).order_by(api_keys.c.created_at))
        return [_to_key(row) for row in result]

    async def revoke(self, key_id: str, now: datetime) -> bool:
        """Revoke the key; False if there is no such key. Revoking twice keeps the first time."""
        result = await self._conn.execute(
            update(api_keys)
            .where(api_keys.c.key_id == key_id, api_keys.c.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        return result.rowcount > 0 or await self.get(key_id) is not None


def _to_key(row: Row[Any]) -> ApiKey:
    return ApiKey(
        key_id=row.key_id,
        secret_hash=row.secret_hash,
        scopes=frozenset(Scope(s) for s in row.scopes.split()),
        org_id=row.org_id,
        name=row.name,
        created_at=row.created_at,
        revoked_at=row.revoked_at,
    )
