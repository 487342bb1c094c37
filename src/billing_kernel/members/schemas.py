"""Members as the API takes and shows them."""

from __future__ import annotations

from pydantic import (
    BaseModel,
    Field,
)

from billing_kernel.members.rules import MemberRole
from billing_kernel.web.schemas import (
    StrictBody,
    Text,
)


class MemberIn(StrictBody):
    role: MemberRole = MemberRole.MEMBER
    email: Text | None = Field(default=None, max_length=320)


class MemberOut(BaseModel):
    user_id: str
    role: MemberRole


class MembersOut(BaseModel):
    org_id: str
    seats: int
    members: list[MemberOut]
