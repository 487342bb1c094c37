"""Orgs and plan changes as the API takes and shows them."""

from __future__ import annotations

from datetime import datetime

from pydantic import (
    BaseModel,
    Field,
)

from billing_kernel.orgs.rules import BillingStatus
from billing_kernel.web.schemas import (
    Slug,
    StrictBody,
    Text,
)


class PlanChangeIn(StrictBody):
    plan_slug: Slug = Field(description="Slug of an active plan.", examples=["growth"])


class PlanChangeOut(BaseModel):
    org_id: str
    plan_slug: str
    status: BillingStatus


class OrgIn(StrictBody):
    name: Text | None = Field(default=None, max_length=200)
    plan_slug: Slug | None = Field(default=None, description="Move the org to this plan.")


class OrgOut(BaseModel):
    org_id: str
    name: str | None
    plan_slug: str
    status: BillingStatus
    trial_ends_at: datetime | None
