"""`billing-kernel coupons ...`: coupons defined, archived, applied to orgs and removed."""

from __future__ import annotations

from typing import Annotated

import typer
from pydantic import ValidationError

from billing_kernel.commands import echo_each, fail, with_kernel
from billing_kernel.discounts.rules import Coupon, Redemption
from billing_kernel.discounts.schemas import CouponIn

coupons_app = typer.Typer(
    help="Coupons: a percentage or an amount off the invoices of the orgs they are applied to.",
    no_args_is_help=True,
)

CouponFile = Annotated[
    typer.FileText,
    typer.Argument(help="The coupon as JSON, as `POST /api/v1/billing/coupons` takes it."),
]


def _line(coupon: Coupon) -> str:
    limit = "" if coupon.max_redemptions is None else f" of {coupon.max_redemptions}"
    state = "  (archived)" if coupon.archived_at is not None else ""
    return (
        f"{coupon.code:<20} {coupon.name}: {coupon.describe()}; "
        f"applied to {coupon.redemptions}{limit} orgs{state}"
    )


def _applied(redemption: Redemption) -> str:
    removed = "" if redemption.removed_at is None else f", removed {redemption.removed_at:%Y-%m-%d}"
    return (
        f"{redemption.coupon.code:<20} {redemption.coupon.describe()}; "
        f"applied {redemption.redeemed_at:%Y-%m-%d}{removed}"
    )


@coupons_app.command("create")
def coupons_create(file: CouponFile) -> None:
    """Define a coupon (the same code and terms again: nothing changes)."""
    try:
        body = CouponIn.model_validate_json(file.read())
    except ValidationError as exc:
        first = exc.errors()[0]
        fail(f"{'.'.join(str(p) for p in first['loc']) or 'coupon'}: {first['msg']}")
    coupon, created = with_kernel(lambda kernel: kernel.discounts.create(body.coupon()))
    typer.echo(_line(coupon) if created else f"{_line(coupon)}  (already defined)")


@coupons_app.command("list")
def coupons_list() -> None:
    """Every coupon, archived ones too."""
    echo_each(
        [_line(c) for c in with_kernel(lambda kernel: kernel.discounts.list_coupons())],
        none="no coupons",
    )


@coupons_app.command("archive")
def coupons_archive(code: str) -> None:
    """Stop CODE from being applied to more orgs (those it was applied to keep it)."""
    typer.echo(_line(with_kernel(lambda kernel: kernel.discounts.archive(code))))


@coupons_app.command("apply")
def coupons_apply(org_id: str, code: str) -> None:
    """Apply CODE to ORG_ID from now, starting with this month's invoice."""
    redemption, _ = with_kernel(lambda kernel: kernel.discounts.apply(org_id, code))
    typer.echo(f"{org_id}: {_applied(redemption)}")


@coupons_app.command("remove")
def coupons_remove(org_id: str, code: str) -> None:
    """Remove CODE from ORG_ID: invoices made from now no longer take it off."""
    typer.echo(f"{org_id}: {_applied(with_kernel(lambda k: k.discounts.remove(org_id, code)))}")


@coupons_app.command("of")
def coupons_of(org_id: str) -> None:
    """The coupons applied to ORG_ID, in the order they apply."""
    found = with_kernel(lambda kernel: kernel.discounts.redemptions(org_id))
    echo_each([_applied(r) for r in found], none=f"no coupons applied to {org_id}")
