"""The caller of a request, and what it may do."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from billing_kernel.domain.billing_state import MemberRole
from billing_kernel.errors import Forbidden


class Scope(StrEnum):
    """What a service API key may do."""

    USAGE_WRITE = "usage:write"
    """Send usage events."""
    QUOTA_CHECK = "quota:check"
    """Read org summaries and ask for quota decisions."""
    BILLING_ADMIN = "billing:admin"
    """Manage orgs, members and plans (and everything quota:check may do)."""


ADMIN_ROLES = frozenset({MemberRole.OWNER, MemberRole.ADMIN})


@dataclass(frozen=True, slots=True)
class User:
    """A person, signed in with a JWT whose `sub` is their id in the product."""

    user_id: str


@dataclass(frozen=True, slots=True)
class Service:
    """A backend holding an API key: valid for every org, or for `org_id` alone."""

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


Principal = User | Service
