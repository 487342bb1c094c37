"""Metrics (meters) as the API shows and takes them."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

from billing_kernel.metrics.rules import (
    EVENT_NAME_PATTERN_TEXT,
    MAX_FILTERS,
    MAX_METER_EVENTS,
    VALUE_PROPERTIES,
    Metric,
    either,
    new_meter,
)
from billing_kernel.web.schemas import StrictBody

DEFAULT_AMOUNT = either(VALUE_PROPERTIES)


class MetricIn(StrictBody):
    """A metric's definition as a meter."""

    name: str = Field(min_length=1, max_length=128, examples=["LLM tokens"])
    unit: str = Field(min_length=1, max_length=32, examples=["tokens"])
    aggregation: Literal["sum", "count", "max", "latest", "unique_count"] = Field(
        description="`sum`: the sum of each event's amount (see `value_property`); `count`: how "
        "many events; `max`: the highest amount one event of the month carried; `latest`: "
        "the amount of the month's last event by `occurred_at` (then idempotency key); "
        "`unique_count`: how many distinct values of `value_property` the month's events "
        "carry. A max, a latest and a unique count are checked against limits, but not "
        "recorded, consumed or reserved as a quantity. Cannot change once defined."
    )
    events: list[Annotated[str, Field(pattern=EVENT_NAME_PATTERN_TEXT)]] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_METER_EVENTS,
        description="The names of the events it counts (`event` of a usage event: letters, "
        "digits and `. _ : / -`, up to 128). Left out: the metric's key. Events sent with "
        "`metric` and `quantity` count toward that metric alone.",
        examples=[["llm.completion"]],
    )
    value_property: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description=f"Where a sum, a max or a latest reads its amount, a whole number (left out: "
        f"{DEFAULT_AMOUNT}); a unique count's counted property (required). An event it "
        "counts without it is refused. A count reads none.",
        examples=["total_tokens"],
    )
    filters: dict[str, str | int | bool] | None = Field(
        default=None,
        max_length=MAX_FILTERS,
        description="Properties an event must have with exactly these values to count "
        "(`true` is not `1`); an event of a counted name that fails one is accepted and "
        "counts toward nothing here.",
        examples=[{"model": "gpt-5"}],
    )

    def metric(self, key: str) -> Metric:
        return new_meter(
            key,
            name=self.name,
            unit=self.unit,
            aggregation=self.aggregation,
            events=self.events,
            value_property=self.value_property,
            filters=self.filters,
        )


class MetricOut(BaseModel):
    key: str
    name: str
    unit: str
    aggregation: str = Field(
        description="`sum`, `count`, `max`, `latest`, `unique_count`, or `seats` (org members)."
    )
    events: list[str] = Field(description="The names of the events it counts.")
    value_property: str | None = Field(
        description=f"Where a sum, a max or a latest reads its amount (null: {DEFAULT_AMOUNT}); "
        "a unique count's counted property."
    )
    filters: dict[str, str | int | bool]
    recordable: bool = Field(
        description="Whether a quantity of it may be recorded, consumed or reserved (not "
        "seats, which follow membership, nor a max, a latest or a unique count)."
    )

    @classmethod
    def of(cls, metric: Metric) -> MetricOut:
        seats = not metric.counts_events
        return cls(
            key=metric.key,
            name=metric.name,
            unit=metric.unit,
            aggregation=metric.aggregation.value,
            events=[] if seats else list(metric.listens_to),
            value_property=metric.value_property,
            filters=dict(metric.filters),
            recordable=metric.is_recordable,
        )


class MetricsOut(BaseModel):
    metrics: list[MetricOut]
