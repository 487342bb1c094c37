"""`billing-kernel metrics ...`: the metric catalogue, and defining what a metric counts."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from billing_kernel.commands import echo_each, fail, with_kernel
from billing_kernel.errors import InvalidInput
from billing_kernel.metrics.rules import MeterPreview, Metric, new_meter

metrics_app = typer.Typer(help="Metrics and what each counts.", no_args_is_help=True)


def describe(metric: Metric) -> str:
    """One line: key, aggregation, what it counts."""
    if not metric.counts_events:
        return f"{metric.key:<20} {metric.aggregation:<6} org members ({metric.unit})"
    amount = "" if metric.aggregation == "count" else f" of {metric.value_property or 'value'}"
    where = "".join(f" {name}={json.dumps(value)}" for name, value in metric.filters)
    names = ", ".join(metric.listens_to)
    required = ", required" if metric.required else ""
    return (
        f"{metric.key:<20} {metric.aggregation}{amount} over events {names}"
        f"{' where' + where if where else ''} ({metric.unit}{required})"
    )


def preview_text(preview: MeterPreview) -> str:
    """What a meter would have made of last month's events, in a sentence."""
    if not preview.events:
        return f"{preview.period.label}: no events of its names to try it on"
    some = "" if preview.complete else f"the first {preview.events:,} "
    tried = f"{preview.period.label}: of {some}{preview.events:,} events of its names"
    return (
        f"{tried}, it would have counted {preview.counted:,} and skipped "
        f"{preview.not_counted:,} for want of its property"
    )


@metrics_app.command("list")
def metrics_list() -> None:
    """Every metric, in display order, with what it counts."""
    echo_each(describe(metric) for metric in with_kernel(lambda kernel: kernel.metrics.catalogue()))


@metrics_app.command("define")
def metrics_define(
    key: str,
    name: Annotated[str, typer.Option(help="What people read, e.g. 'LLM tokens'.")],
    unit: Annotated[str, typer.Option(help="e.g. tokens, runs.")],
    aggregation: Annotated[
        str, typer.Option(help="sum, count, max, latest or unique_count.")
    ] = "sum",
    event: Annotated[
        list[str] | None, typer.Option(help="An event name it counts (repeat; default: KEY).")
    ] = None,
    value_property: Annotated[
        str | None,
        typer.Option(
            help="Where a sum, max or latest reads its amount (default: value, else "
            "quantity); a unique_count's counted property."
        ),
    ] = None,
    where: Annotated[
        list[str] | None,
        typer.Option(
            help="PROPERTY=JSON: count only events with it (repeat), e.g. model='\"gpt-5\"'."
        ),
    ] = None,
    required: Annotated[
        bool,
        typer.Option(
            "--required",
            help="Refuse an event that lacks its property (else this metric skips it and "
            "the others count it).",
        ),
    ] = False,
) -> None:
    """Add a metric, or change which events an existing one counts (from now on)."""
    filters: dict[str, object] = {}
    for condition in where or []:
        prop, sep, value = condition.partition("=")
        try:
            filters[prop] = json.loads(value) if sep else None
        except json.JSONDecodeError:
            filters[prop] = value  # plain text: model=gpt-5
    try:
        meter = new_meter(
            key,
            name=name,
            unit=unit,
            aggregation=aggregation,
            events=event,
            value_property=value_property,
            filters=filters,
            required=required,
        )
    except InvalidInput as exc:
        fail(exc.message)
    defined = with_kernel(lambda kernel: kernel.metrics.define(meter))
    typer.echo(f"{'defined' if defined.created else 'changed'}: {describe(meter)}")
    typer.echo(f"last month, {preview_text(defined.last_month)}")
