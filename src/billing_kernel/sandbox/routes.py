"""`/api/v1/sandbox/clock`: the sandbox clock, in dev mode (403 `sandbox_off` otherwise)."""

from __future__ import annotations

import logging

from fastapi import APIRouter
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from billing_kernel.sandbox.rules import parse_step
from billing_kernel.sandbox.schemas import AdvanceIn, ClockOut, MovedOut, SetIn
from billing_kernel.sandbox.service import SandboxService
from billing_kernel.web.deps import DeploymentAdmin, KernelDep
from billing_kernel.web.problems import problem_responses

logger = logging.getLogger(__name__)

router = APIRouter(
    prefix="/api/v1/sandbox",
    tags=["sandbox"],
    responses=problem_responses(401, 403, 422),
)


@router.get("/clock", operation_id="getSandboxClock", summary="The kernel's time")
async def get_clock(_key: DeploymentAdmin, kernel: KernelDep) -> ClockOut:
    """The kernel's time, and how far it stands past real time (0 unless moved in dev
    mode). A `billing:admin` key valid for every org."""
    return ClockOut.of(kernel.sandbox.state())


@router.post(
    "/clock/advance",
    operation_id="advanceSandboxClock",
    summary="Move the sandbox clock forward, and do the work due by then",
)
async def advance_clock(body: AdvanceIn, _key: DeploymentAdmin, kernel: KernelDep) -> MovedOut:
    """Dev mode only (403 `sandbox_off` otherwise). The kernel's time moves forward by `by`
    and keeps running from there; the work due by then is done before the answer: every
    month that has closed is invoiced (`closed`), scheduled plan changes apply; trials end
    and retries fall due by the clock. Every answer carries the header
    `Billing-Sandbox-Time` while the clock stands ahead. A `billing:admin` key valid for
    every org."""
    return MovedOut.of_move(await kernel.sandbox.advance(parse_step(body.by)))


@router.post(
    "/clock",
    operation_id="setSandboxClock",
    summary="Move the sandbox clock forward to a time, and do the work due by then",
)
async def set_clock(body: SetIn, _key: DeploymentAdmin, kernel: KernelDep) -> MovedOut:
    """As `advanceSandboxClock`, to the time `to`: 422 for a time before the clock's (it
    moves forward only) or more than two years past real time."""
    return MovedOut.of_move(await kernel.sandbox.set(body.to))


@router.delete(
    "/clock",
    operation_id="resetSandboxClock",
    summary="Return the sandbox clock to real time",
)
async def reset_clock(_key: DeploymentAdmin, kernel: KernelDep) -> ClockOut:
    """Dev mode only. Back to real time; what was made while the clock stood ahead (the
    invoices of months that have not really ended) stays: start from a fresh database to
    start over."""
    return ClockOut.of(await kernel.sandbox.reset())


SANDBOX_HEADER = b"billing-sandbox-time"


class SandboxClockMiddleware:
    """Dev mode: before each request, the sandbox clock's offset as the database holds it
    (a move made by the CLI or another process is seen at once); while it stands ahead,
    every answer says so (`Billing-Sandbox-Time`), so no one mistakes it for real time."""

    def __init__(self, app: ASGIApp, sandbox: SandboxService) -> None:
        self.app = app
        self.sandbox = sandbox

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            await self.sandbox.refresh()
        except Exception:  # the database away: the offset last read; the route will say
            logger.warning("could not read the sandbox clock", exc_info=True)
        sandbox = self.sandbox

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start" and sandbox.moved:  # after a move too
                now = sandbox.state().now.isoformat(timespec="seconds").replace("+00:00", "Z")
                message = {
                    **message,
                    "headers": [*message.get("headers", []), (SANDBOX_HEADER, now.encode())],
                }
            await send(message)

        await self.app(scope, receive, sending)
