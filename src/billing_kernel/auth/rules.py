"""Who calls the kernel and what each caller may do: users with JWTs, backends with API keys
(`bk_<key id>_<secret>`, shown once; only a SHA-256 of the secret is stored).

The secret is 256 random bits, so a fast hash is enough (there is nothing to brute-force), and
the comparison is constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from billing_kernel.errors import Forbidden


class Scope(StrEnum):
    """What a service API key may do."""

    USAGE_WRITE = "usage:write"
    """Send usage events."""
    QUOTA_CHECK = "quota:check"
    """Read org summaries and ask for quota decisions."""
    BILLING_ADMIN = "billing:admin"
    """Manage orgs, members and plans (and everything quota:check may do)."""
    METRICS_READ = "metrics:read"
    """Read the operators' metrics (`GET /metrics`): for Prometheus. It grants nothing on
    any org."""


@dataclass(frozen=True, slots=True)
class User:
    """A person, signed in with a JWT whose `sub` is their id in the product."""

    user_id: str


@dataclass(frozen=True, slots=True)
class ApiKeyCaller:
    """A product's backend calling with an API key: valid for every org, or for `org_id`
    alone."""

    key_id: str
    scopes: frozenset[Scope] = field(default_factory=frozenset)
    org_id: str | None = None

    def may_act_for(self, org_id: str) -> bool:
        return self.org_id is None or self.org_id == org_id

    def require_org(self, org_id: str) -> None:
        """Forbidden unless the key may act for `org_id`: the one check of a key's org."""
        if not self.may_act_for(org_id):
            raise Forbidden(
                f"this API key is restricted to org {self.org_id!r}; the request names {org_id!r}"
            )


Principal = User | ApiKeyCaller
"""Who is calling: a signed-in person, or a backend with an API key."""


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
