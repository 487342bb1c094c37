"""Alert thresholds and alerts as the API takes and answers them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, Field

from billing_kernel.alerts.rules import (
    MAX_PERCENT,
    MAX_QUANTITY,
    MAX_THRESHOLDS,
    AlertState,
    Threshold,
)
from billing_kernel.web.schemas import WHOLE, StrictBody


class PercentIn(StrictBody):
    """A percentage of the org's limit."""

    percent: Annotated[int, Field(ge=1, le=MAX_PERCENT), WHOLE] = Field(
        description="Percent of the limit, e.g. 80.", examples=[80]
    )

    def threshold(self) -> Threshold:
        return Threshold(percent=self.percent)


class QuantityIn(StrictBody):
    """An absolute quantity of the metric."""

    quantity: Annotated[int, Field(ge=1, le=MAX_QUANTITY), WHOLE] = Field(
        description="Units of the metric, e.g. 5000.", examples=[5000]
    )

    def threshold(self) -> Threshold:
        return Threshold(quantity=self.quantity)


ThresholdIn = PercentIn | QuantityIn
"""A threshold: `{"percent": 80}` or `{"quantity": 5000}`, never both."""


class ThresholdsIn(StrictBody):
    thresholds: list[ThresholdIn] = Field(
        max_length=MAX_THRESHOLDS,
        description="Replaces the plan's thresholds for this metric; empty: no alerts.",
        examples=[[{"percent": 50}, {"percent": 90}, {"quantity": 5000}]],
    )

    def parsed(self) -> list[Threshold]:
        return [t.threshold() for t in self.thresholds]


class ThresholdOut(BaseModel):
    key: str = Field(description='"80%" or "5000": how alerts and events name it.')
    percent: int | None = None
    quantity: int | None = Field(
        description="The usage that reaches it under the current limit; null: a percentage "
        "of an unlimited metric, which never alerts."
    )

    @classmethod
    def of(cls, threshold: Threshold, limit: int | None) -> ThresholdOut:
        return cls(key=threshold.key, percent=threshold.percent, quantity=threshold.at(limit))


class MetricThresholdsOut(BaseModel):
    metric: str
    limit: int | None = Field(description="The org's limit; null: unlimited.")
    source: str = Field(description="`org`: the org's own thresholds; `plan`: its plan's.")
    thresholds: list[ThresholdOut]


class OrgThresholdsOut(BaseModel):
    org_id: str
    metrics: list[MetricThresholdsOut]


class PlanThresholdsOut(BaseModel):
    plan_slug: str
    metric: str
    thresholds: list[ThresholdOut]


class AlertOut(BaseModel):
    metric: str
    threshold: str = Field(description='The threshold\'s key ("80%", "5000"), or "blocked".')
    status: str = Field(description="`crossed`, or `resolved` by a change of limit.")
    crossings: int = Field(description="How often it was crossed this period.")
    used: int = Field(description="Usage when its status last changed.")
    limit: int | None
    crossed_at: datetime
    resolved_at: datetime | None
    dismissed_at: datetime | None

    @classmethod
    def of(cls, state: AlertState) -> AlertOut:
        return cls(
            metric=state.metric,
            threshold=state.threshold,
            status=state.status,
            crossings=state.crossings,
            used=state.used,
            limit=state.limit,
            crossed_at=state.crossed_at,
            resolved_at=state.resolved_at,
            dismissed_at=state.dismissed_at,
        )


class AlertsOut(BaseModel):
    org_id: str
    period: str = Field(description="The month, `YYYY-MM`.")
    alerts: list[AlertOut]
