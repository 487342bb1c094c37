"""API keys: issued, listed, revoked, and checked on every request (from memory for a few
seconds, so a busy backend does not cost a database read per call)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime

from billing_kernel.auth.repository import ApiKeyRepository
from billing_kernel.auth.rules import (
    ApiKey,
    ApiKeyCaller,
    Scope,
    hash_secret,
    new_key_material,
    secret_matches,
    split_key,
)
from billing_kernel.common.validation import validate_id
from billing_kernel.config import Settings
from billing_kernel.db.unit_of_work import Transactions, UnitOfWork
from billing_kernel.errors import ApiKeyNotFound, InvalidInput, Unauthenticated

MAX_CACHED_KEYS = 10_000


@dataclass
class ApiKeyCache:
    """Keys read recently, by key id, with the time until which each may be used."""

    keys: dict[str, tuple[float, ApiKey]] = field(default_factory=dict)


class ApiKeyService:
    def __init__(
        self,
        transactions: Transactions,
        settings: Settings,
        clock: Callable[[], datetime],
        cache: ApiKeyCache,
    ) -> None:
        self._tx = transactions
        self._settings = settings
        self._clock = clock
        self._cache = cache.keys

    async def create(
        self,
        scopes: Iterable[Scope],
        *,
        org_id: str | None = None,
        name: str | None = None,
        uow: UnitOfWork | None = None,
    ) -> tuple[ApiKey, str]:
        """A new key; returns it and its plaintext, which is never shown again."""
        granted = frozenset(scopes)
        if not granted:
            raise InvalidInput("an API key needs at least one scope", field="scopes")
        if org_id is not None:
            validate_id(org_id, "org_id")
        key_id, secret, plaintext = new_key_material()
        key = ApiKey(
            key_id=key_id,
            secret_hash=hash_secret(secret),
            scopes=granted,
            org_id=org_id,
            name=name,
            created_at=self._clock(),
        )
        async with self._tx.begin(uow) as unit:
            await ApiKeyRepository(unit).add(key)
        return key, plaintext

    async def list_all(self, uow: UnitOfWork | None = None) -> list[ApiKey]:
        async with self._tx.read(uow) as unit:
            return await ApiKeyRepository(unit).list_all()

    async def revoke(self, key_id: str, uow: UnitOfWork | None = None) -> None:
        """Revoke a key at once; requests with it are refused from now on."""
        async with self._tx.begin(uow) as unit:
            if not await ApiKeyRepository(unit).revoke(key_id, self._clock()):
                raise ApiKeyNotFound(f"no API key {key_id!r}", key_id=key_id)
        self._cache.pop(key_id, None)

    async def authenticate(self, plaintext: str) -> ApiKeyCaller:
        """The caller a key belongs to; Unauthenticated for a malformed, unknown or revoked
        key (one message for all, so the answer tells an attacker nothing)."""
        parts = split_key(plaintext)
        if parts is not None:
            key_id, secret = parts
            key = await self._get(key_id)
            if key is not None and secret_matches(key, secret) and not key.is_revoked:
                return ApiKeyCaller(key_id=key.key_id, scopes=key.scopes, org_id=key.org_id)
        raise Unauthenticated("the API key is not valid (unknown, malformed or revoked)")

    async def _get(self, key_id: str) -> ApiKey | None:
        """The key, from memory for up to BILLING_API_KEY_CACHE_SECONDS after it was read."""
        cached = self._cache.get(key_id)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        async with self._tx.read() as unit:
            key = await ApiKeyRepository(unit).get(key_id)
        ttl = self._settings.api_key_cache_seconds
        if key is not None and ttl > 0:
            if len(self._cache) >= MAX_CACHED_KEYS:
                self._cache.clear()
            self._cache[key_id] = (time.monotonic() + ttl, key)
        return key
