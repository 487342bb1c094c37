"""API keys: `bk_<key id>_<secret>`. Shown once; only a SHA-256 of the secret is stored.

The secret is 256 random bits, so a fast hash is enough (there is nothing to brute-force), and
the comparison is constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from billing_kernel.auth.principal import Scope

PREFIX = "bk_"
KEY_ID_LENGTH = 16


@dataclass(frozen=True, slots=True)
class ApiKey:
    key_id: str
    secret_hash: str
    scopes: frozenset[Scope]
    org_id: str | None
    name: str | None
    created_at: datetime
    revoked_at: datetime | None = None

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_key_material() -> tuple[str, str, str]:
    """A new (key id, secret, plaintext key)."""
    key_id = secrets.token_hex(KEY_ID_LENGTH // 2)
    secret = secrets.token_urlsafe(32)
    return key_id, secret, f"{PREFIX}{key_id}_{secret}"


def looks_like_api_key(token: str) -> bool:
    return token.startswith(PREFIX)


def split_key(plaintext: str) -> tuple[str, str] | None:
    """(key id, secret) of a well-formed key, else None."""
    if not plaintext.startswith(PREFIX):
        return None
    key_id, separator, secret = plaintext[len(PREFIX) :].partition("_")
    well_formed = (
        len(key_id) == KEY_ID_LENGTH
        and set(key_id) <= set(string.hexdigits.lower())
        and separator
        and secret
    )
    return (key_id, secret) if well_formed else None


def secret_matches(key: ApiKey, secret: str) -> bool:
    return hmac.compare_digest(key.secret_hash, hash_secret(secret))


def parse_scopes(values: Iterable[str]) -> frozenset[Scope]:
    """Scopes from their names; ValueError names an unknown one."""
    scopes = set()
    for value in values:
        try:
            scopes.add(Scope(value.strip()))
        except ValueError:
            known = ", ".join(s.value for s in Scope)
            raise ValueError(f"unknown scope {value.strip()!r}; known scopes: {known}") from None
    return frozenset(scopes)
