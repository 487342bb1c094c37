"""`billing-kernel clock ...`: the sandbox clock, in dev mode (BILLING_DEV_MODE=true)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer

from billing_kernel.commands import echo_each, fail, with_kernel
from billing_kernel.errors import InvalidInput
from billing_kernel.kernel import Kernel
from billing_kernel.sandbox.rules import parse_step
from billing_kernel.sandbox.service import ClockState, Moved

clock_app = typer.Typer(
    help="The sandbox clock: move the kernel's time forward in dev mode.", no_args_is_help=True
)


def clock_text(state: ClockState) -> str:
    if not state.offset:
        return f"{state.now:%Y-%m-%d %H:%M:%S} UTC (real time)"
    days = state.offset.total_seconds() / 86_400
    return f"{state.now:%Y-%m-%d %H:%M:%S} UTC (sandbox: {days:,.2f} days past real time)"


def moved_lines(moved: Moved) -> list[str]:
    lines = [f"now {clock_text(moved.clock)}"]
    lines += [
        f"closed {i.period_start:%Y-%m} for {i.org_id}: {i.number} {i.currency} {i.total:.2f}"
        for i in moved.closed.closed
    ]
    lines += [
        f"could not close {f.period.label} for {f.org_id}: {f.reason}" for f in moved.closed.failed
    ]
    return lines


@clock_app.command("show")
def clock_show() -> None:
    """The kernel's time."""

    async def work(kernel: Kernel) -> ClockState:
        return kernel.sandbox.state()  # as `with_kernel` read it

    typer.echo(clock_text(with_kernel(work)))


@clock_app.command("advance")
def clock_advance(
    amount: Annotated[int, typer.Argument(help="How many units, from 1.")],
    unit: Annotated[str, typer.Argument(help="minute(s), hour(s), day(s), week(s), month(s).")],
) -> None:
    """Move the clock forward (`clock advance 1 month`) and do the work due by then:
    months that closed are invoiced, scheduled plan changes apply."""
    try:
        step = parse_step(f"{amount} {unit}")
    except InvalidInput as exc:
        fail(exc.message)
    echo_each(moved_lines(with_kernel(lambda kernel: kernel.sandbox.advance(step))))


@clock_app.command("set")
def clock_set(
    to: Annotated[
        str, typer.Argument(help="An RFC 3339 time with a zone, e.g. 2027-01-02T09:00Z.")
    ],
) -> None:
    """Move the clock forward to a time and do the work due by then."""
    try:
        target = datetime.fromisoformat(to.replace("Z", "+00:00"))
    except ValueError:
        fail(f"not an RFC 3339 time: {to!r} (e.g. 2027-01-02T09:00:00Z)")
    echo_each(moved_lines(with_kernel(lambda kernel: kernel.sandbox.set(target))))


@clock_app.command("reset")
def clock_reset() -> None:
    """Back to real time (what was made meanwhile stays)."""
    typer.echo(f"now {clock_text(with_kernel(lambda kernel: kernel.sandbox.reset()))}")
