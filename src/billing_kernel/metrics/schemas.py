"""Metrics (meters) as the API shows and takes them."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, StrictBool

from billing_kernel.metrics.rules import (
    EVENT_NAME_PATTERN_TEXT,
    MAX_FILTERS,
    MAX_METER_EVENTS,
    PREVIEW_EVENTS,
    VALUE_PROPERTIES,
    MeterPreview,
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
        description="The names of the events it counts (`event` of a usage event: any text "
        "of 1 to 255 characters without control characters). Left out: the metric's key. "
        "Events sent with `metric` and `quantity` count toward that metric alone.",
        examples=[["llm.completion"]],
    )
    value_property: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description=f"Where a sum, a max or a latest reads its amount, a whole number (left out: "
        f"{DEFAULT_AMOUNT}); a unique count's counted property (required). An event of its "
        "names without it (or without a usable amount) is skipped by this metric, named in "
        "the event's `not_counted_by`, and still counts toward the other metrics, unless "
        "`required`. A count reads none.",
        examples=["total_tokens"],
    )
    required: StrictBool = Field(
        default=False,
        description="True: an event of its names that its filters admit but that lacks its "
        "property (or a usable amount) is refused whole (`invalid_input` naming the metric "
        "and the property), counted nowhere; for a metric that bills, so that no billed unit "
        "is dropped. False (left out): this metric skips it and the others count it. Not "
        "for a count, which reads no property.",
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
            required=self.required,
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
    required: bool = Field(
        description="Whether an event lacking its property is refused whole (else skipped by "
        "this metric alone)."
    )
    recordable: bool = Field(
        description="Whether a quantity of it may be recorded, consumed or reserved (not "
        "seats, which follow membership, nor a max, a latest or a unique count)."
    )
    not_counted_this_month: int | None = Field(
        default=None,
        description="Events this month, over every org, that it skipped: their name and its "
        "filters matched, but it could not read its property (see `not_counted_by`). Above "
        "0 for a metric that bills: senders are leaving out its property. Shown to a "
        "`billing:admin` key valid for every org; null for anyone else.",
    )

    @classmethod
    def of(cls, metric: Metric, not_counted: int | None = None) -> MetricOut:
        seats = not metric.counts_events
        return cls(
            key=metric.key,
            name=metric.name,
            unit=metric.unit,
            aggregation=metric.aggregation.value,
            events=[] if seats else list(metric.listens_to),
            value_property=metric.value_property,
            filters=dict(metric.filters),
            required=metric.required,
            recordable=metric.is_recordable,
            not_counted_this_month=not_counted,
        )


class MetricsOut(BaseModel):
    metrics: list[MetricOut]


class MeterPreviewOut(BaseModel):
    """What the metric, as now defined, would have made of last month's events."""

    period: str = Field(description="Last month, `YYYY-MM`.")
    events: int = Field(description="Events of its names tried (named events, not reports).")
    counted: int = Field(description="Of those, the ones it would have counted.")
    not_counted: int = Field(
        description="Of those, the ones its filters admit but whose property it could not "
        "read: it would have skipped them (refused them, were it `required`)."
    )
    complete: bool = Field(
        description=f"Whether all of last month's events of its names were tried (at most "
        f"{PREVIEW_EVENTS:,} are)."
    )

    @classmethod
    def of(cls, preview: MeterPreview) -> MeterPreviewOut:
        return cls(
            period=preview.period.label,
            events=preview.events,
            counted=preview.counted,
            not_counted=preview.not_counted,
            complete=preview.complete,
        )


class MetricDefinedOut(MetricOut):
    last_month: MeterPreviewOut
