"""An org's entitlements and its own feature values, as the API shows them."""

from __future__ import annotations

from pydantic import BaseModel, Field

from billing_kernel.features.service import Entitlements
from billing_kernel.plans.schemas import FeatureValueType, PolicyOut
from billing_kernel.web.schemas import StrictBody

CACHE_SECONDS = 60
"""How long a client may keep an org's entitlements before reading them again."""


class LimitOut(BaseModel):
    included_quantity: int | None = Field(description="The org's limit; null: unlimited.")
    policy: PolicyOut


class EntitlementsOut(BaseModel):
    org_id: str
    plan_slug: str
    plan_version: int
    features: dict[str, bool | int | str] = Field(
        description="Every feature the org has, by key: its plan's, after its own values. A "
        "feature not listed is not granted (a switch reads as false)."
    )
    own_features: list[str] = Field(
        description="The features whose value is the org's own, not its plan's."
    )
    limits: dict[str, LimitOut] = Field(
        description="Every metric's limit and policy for the org, after its own terms (a "
        "metric its plan does not name: 0, hard). Whether a given use fits is a quota "
        "check's to say (`checkQuota`): it counts the usage too."
    )
    cache_seconds: int = Field(
        description="How long these may be kept before reading them again (also said by "
        "`Cache-Control`); a change made meanwhile is seen after at most that long."
    )

    @classmethod
    def of(cls, found: Entitlements) -> EntitlementsOut:
        return cls(
            org_id=found.org_id,
            plan_slug=found.plan_slug,
            plan_version=found.plan_version,
            features=dict(found.features),
            own_features=sorted(found.own),
            limits={
                metric: LimitOut(included_quantity=terms.limit, policy=PolicyOut.of(terms.policy))
                for metric, terms in found.limits.items()
            },
            cache_seconds=CACHE_SECONDS,
        )


class FeatureValueIn(StrictBody):
    value: FeatureValueType = Field(
        description="The org's own value: a switch, a whole number within 10^15 either way, "
        "or a text of 1 to 200 characters, without control characters or spaces at either "
        "end.",
        examples=[True, 10, "priority"],
    )
