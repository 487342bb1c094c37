"""The sandbox clock: in dev mode, the kernel's time moved forward, with the work due by
then done at once (months closed and invoiced, scheduled plan changes applied; trials end
and deliveries fall due by the clock itself)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from billing_kernel.config import Settings
from billing_kernel.db.unit_of_work import Transactions
from billing_kernel.errors import SandboxOff
from billing_kernel.invoices.service import CloseReport, InvoiceService
from billing_kernel.sandbox.repository import SandboxRepository
from billing_kernel.sandbox.rules import MovableClock, Step, advanced, offset_to


@dataclass(frozen=True, slots=True)
class ClockState:
    now: datetime
    """The kernel's time."""
    offset: timedelta
    """How far it stands past real time (zero: real time)."""


@dataclass(frozen=True, slots=True)
class Moved:
    clock: ClockState
    closed: CloseReport
    """What the move made due, done: the invoices finalized (and the orgs that failed)."""


class SandboxService:
    def __init__(
        self,
        transactions: Transactions,
        settings: Settings,
        clock: MovableClock | None,
        invoices: InvoiceService,
    ) -> None:
        self._tx = transactions
        self._settings = settings
        self._clock = clock
        self._invoices = invoices

    @property
    def enabled(self) -> bool:
        """Whether the clock may move: dev mode, on the kernel's own movable clock."""
        return self._settings.dev_mode and self._clock is not None

    @property
    def moved(self) -> bool:
        return self._clock is not None and self._clock.moved

    def state(self) -> ClockState:
        """The kernel's time and its offset, as this process last read them."""
        if self._clock is None:
            return ClockState(datetime.now(UTC), timedelta(0))
        return ClockState(self._clock(), self._clock.offset)

    async def refresh(self) -> None:
        """Take the clock's offset from the database (a move made by another process: the
        CLI, another server worker). Dev mode only; nothing is read otherwise."""
        if not self.enabled:
            return
        assert self._clock is not None
        async with self._tx.read() as unit:
            self._clock.offset = await SandboxRepository(unit).offset()

    async def advance(self, step: Step) -> Moved:
        """Move the clock forward by `step` from where it stands, then do the work due."""
        return await self._move(lambda now: advanced(now, step))

    async def set(self, target: datetime) -> Moved:
        """Move the clock forward to `target`, then do the work due (InvalidInput for a time
        before the clock's, or too far ahead)."""
        return await self._move(lambda _now: target)

    async def reset(self) -> ClockState:
        """Back to real time. What was made while the clock stood ahead (invoices of months
        that have not really ended, say) stays."""
        clock = self._required()
        async with self._tx.begin() as unit:
            repo = SandboxRepository(unit)
            await repo.hold(datetime.now(UTC))
            await repo.set_offset(timedelta(0), datetime.now(UTC))
        clock.offset = timedelta(0)
        return self.state()

    async def _move(self, target_of: Callable[[datetime], datetime]) -> Moved:
        clock = self._required()
        async with self._tx.begin() as unit:
            repo = SandboxRepository(unit)
            current = await repo.hold(datetime.now(UTC))
            real = datetime.now(UTC)
            offset = offset_to(target_of(real + current), now=real + current, real=real)
            await repo.set_offset(offset, real)
        clock.offset = offset
        return Moved(self.state(), await self._invoices.close_due())

    def _required(self) -> MovableClock:
        if not self.enabled:
            raise SandboxOff(
                "the sandbox clock moves only in dev mode (BILLING_DEV_MODE=true, as "
                "`make run` sets it); a deployment's clock is real time"
            )
        assert self._clock is not None
        return self._clock
