"""Members of an org and their roles. Seats are counted from them."""

from __future__ import annotations

from enum import StrEnum


class MemberRole(StrEnum):
    OWNER = "owner"
    ADMIN = "admin"
    MEMBER = "member"


ADMIN_ROLES = frozenset({MemberRole.OWNER, MemberRole.ADMIN})
"""The roles that may change the org's plan and see the plans on offer."""
