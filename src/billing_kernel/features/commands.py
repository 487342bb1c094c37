"""`billing-kernel features ...`: an org's entitlements, and its own feature values."""

from __future__ import annotations

from typing import Annotated

import typer

from billing_kernel.commands import echo_each, with_kernel
from billing_kernel.features.rules import FeatureValue, describe
from billing_kernel.features.service import Entitlements

features_app = typer.Typer(
    help="An org's features: its plan's, and its own values over them.", no_args_is_help=True
)


def parsed(text: str) -> FeatureValue:
    """A value as typed: `true`/`false` a switch, a whole number a number, else a text."""
    if text in ("true", "false"):
        return text == "true"
    if text.removeprefix("-").isdigit():
        return int(text)
    return text


def _lines(found: Entitlements) -> list[str]:
    if not found.features:
        return [f"{found.org_id} has no features (plan {found.plan_slug} v{found.plan_version})"]
    return [
        f"{key:<24} {describe(value)}{'  (its own)' if key in found.own else ''}"
        for key, value in found.features.items()
    ]


@features_app.command("show")
def features_show(org_id: str) -> None:
    """Every feature ORG_ID has: its plan's, after its own values (marked)."""
    echo_each(_lines(with_kernel(lambda kernel: kernel.features.entitlements(org_id))))


@features_app.command("set")
def features_set(
    org_id: str,
    feature: str,
    value: Annotated[str, typer.Argument(help="`true` or `false`, a whole number, or a text.")],
) -> None:
    """Give ORG_ID its own value of FEATURE, replacing its plan's (or granting one its plan
    does not)."""
    found = with_kernel(
        lambda kernel: kernel.features.set_own_value(org_id, feature, parsed(value))
    )
    echo_each(_lines(found))


@features_app.command("clear")
def features_clear(org_id: str, feature: str) -> None:
    """Return ORG_ID to its plan's value of FEATURE."""
    echo_each(_lines(with_kernel(lambda kernel: kernel.features.clear_own_value(org_id, feature))))
