"""Quota decisions from the kernel: what `check()`, `consume()`, `guard()`, `reserve()` and
`run()` share between the sync and the async tracker. The calls themselves, and their
waits, are the trackers'; what is asked, how an answer reads, and what to do when the
kernel cannot be reached are decided here, once."""

from __future__ import annotations

import contextlib
import logging
import threading
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Generator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from billing_kernel_sdk._errors import TrackerError, TransportError
from billing_kernel_sdk.fields import (
    MAX_IDEMPOTENCY_KEY_LENGTH,
    check_id,
    check_quantity,
)
from billing_kernel_sdk.transport import CHECK_PATH, RESERVATIONS_PATH, Request

if TYPE_CHECKING:
    from billing_kernel_sdk._delivery import Delivery

OnUnavailable = Literal["allow", "deny"]
UNAVAILABLE = "kernel_unavailable"
"""The `reason` of a decision the tracker made itself, the kernel being unreachable."""
REMEMBERED_POLICIES = 10_000
FIRST_RETRY = 0.05
"""Seconds before the second attempt at a decision; each further wait doubles."""


@dataclass(frozen=True, slots=True)
class Upgrade:
    """The cheapest active plan whose limit would allow what was refused."""

    plan_slug: str
    name: str
    included_quantity: int | None


@dataclass(frozen=True, slots=True)
class Decision:
    """The kernel's answer to a quota question (see the kernel's `POST
    /api/v1/billing/org/check`), or the tracker's own when the kernel could not be reached
    (`reason` `kernel_unavailable`: the figures are then None)."""

    allowed: bool
    reason: str
    """`within_limit`, `soft_limit_exceeded`, `in_grace`, `limit_reached`, `past_due`,
    `trial_ended`, `canceled`, or `kernel_unavailable`."""
    message: str
    """The decision in plain words, for the person using the product."""
    metric: str
    requested: int
    consumed: bool
    """The amount was recorded as usage (a consume, or a run): by the kernel, or, when it
    was unreachable and the decision allowed it, queued to be recorded once it is back."""
    used: int | None = None
    held: int | None = None
    limit: int | None = None
    remaining: int | None = None
    enforcement: str | None = None
    """`soft` or `hard`."""
    resets_at: datetime | None = None
    grace_ends_at: datetime | None = None
    status_blocks_at: datetime | None = None
    upgrade: Upgrade | None = None

    @property
    def unavailable(self) -> bool:
        """The tracker decided without the kernel (`on_unavailable`)."""
        return self.reason == UNAVAILABLE

    @classmethod
    def of(cls, answer: dict[str, Any]) -> Decision:
        """The decision in a kernel's answer (a check's, or a reservation's `decision`)."""
        try:
            upgrade = answer.get("upgrade")
            return cls(
                allowed=bool(answer["allowed"]),
                reason=str(answer["reason"]),
                message=str(answer["message"]),
                metric=str(answer["metric"]),
                requested=int(answer["requested"]),
                consumed=bool(answer.get("consumed", False)),
                used=answer["used"],
                held=answer.get("held"),
                limit=answer["limit"],
                remaining=answer["remaining"],
                enforcement=answer.get("enforcement"),
                resets_at=_moment(answer.get("resets_at")),
                grace_ends_at=_moment(answer.get("grace_ends_at")),
                status_blocks_at=_moment(answer.get("status_blocks_at")),
                upgrade=None
                if not upgrade
                else Upgrade(upgrade["plan_slug"], upgrade["name"], upgrade["included_quantity"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise TransportError(
                f"unreadable decision from the kernel: {exc!r}", retryable=False
            ) from None


class QuotaExceeded(TrackerError):
    """The org may not do this now: `guard()`, `reserve()` and `run()` raise it when the
    decision refuses. `decision` is the whole answer; `str(error)` is its `message`, in
    plain words for the person using the product."""

    def __init__(self, decision: Decision) -> None:
        super().__init__(decision.message)
        self.decision = decision


def _moment(value: Any) -> datetime | None:
    return None if value is None else datetime.fromisoformat(str(value))


def check_call(org_id: str, metric: str, amount: int, consume_key: str | None) -> Request:
    body: dict[str, Any] = {"metric": check_id(metric, "metric"), "amount": check_quantity(amount)}
    if consume_key is not None:
        body.update(consume=True, idempotency_key=consume_key)
    return Request(CHECK_PATH, body, check_id(org_id, "org_id"))


def reservation_call(
    org_id: str, metric: str, estimate: int, key: str, ttl_seconds: int | None
) -> Request:
    body: dict[str, Any] = {
        "org_id": check_id(org_id, "org_id"),
        "metric": check_id(metric, "metric"),
        "estimate": check_quantity(estimate),
        "idempotency_key": key,
    }
    if ttl_seconds is not None:
        body["ttl_seconds"] = ttl_seconds
    return Request(RESERVATIONS_PATH, body)


def new_key(kind: str, given: str | None) -> str:
    """The idempotency key of one consume or reservation: the caller's, or a new one."""
    if given is None:
        return f"{kind}:{uuid.uuid4().hex}"
    return check_id(given, "idempotency_key", MAX_IDEMPOTENCY_KEY_LENGTH)


def run_key(run_id: object) -> str:
    """A run's key: `run:<run_id>`, so a retried run is the same consume (and the same
    usage event as runs tracked before the run hook gated)."""
    return (f"run:{run_id}" if run_id is not None else f"run:{uuid.uuid4().hex}")[
        :MAX_IDEMPOTENCY_KEY_LENGTH
    ]


class Gate:
    """What a tracker remembers and decides around quota calls: how long to keep trying,
    each (org, metric)'s last known enforcement, and the decision when the kernel cannot
    be reached (whose allowed usage it queues, to be recorded once the kernel is back)."""

    def __init__(self, core: Delivery, on_unavailable: OnUnavailable | None, budget: float) -> None:
        self.on_unavailable = _choice(on_unavailable)
        if not budget > 0:
            raise ValueError("decision_timeout must be a positive number of seconds")
        self.budget = budget
        self._core = core
        self._enforcement: OrderedDict[tuple[str, str], str] = OrderedDict()
        self._lock = threading.Lock()

    def schedule(self, clock: Callable[[], float]) -> Iterator[tuple[float, float]]:
        """(wait, timeout) for each attempt at one call, inside the decision budget: a
        first attempt at once, then retries after 0.05 s, 0.1 s, 0.2 s, ... while time is
        left. `clock` is `time.monotonic`."""
        deadline = clock() + self.budget
        wait = 0.0
        while True:
            left = deadline - clock() - wait
            if left <= 0:
                return
            yield wait, left
            wait = FIRST_RETRY if wait == 0 else wait * 2

    def learned(self, org_id: str, answer: dict[str, Any]) -> Decision:
        """The decision in a kernel's answer; its metric's enforcement is remembered."""
        decision = Decision.of(answer)
        if decision.enforcement is not None:
            key = (org_id, decision.metric)
            with self._lock:  # the threaded tracker decides from any thread
                self._enforcement[key] = decision.enforcement
                self._enforcement.move_to_end(key)
                if len(self._enforcement) > REMEMBERED_POLICIES:
                    self._enforcement.popitem(last=False)
        return decision

    def unreachable(
        self,
        call: Request,
        choice: OnUnavailable | None,
        error: TransportError,
        consume_key: str | None = None,
    ) -> Decision:
        """The decision without the kernel for `call` (a check, consume or reservation):
        `choice` (the call's), else the tracker's `on_unavailable`, else by the metric's
        last known enforcement: allow a soft metric, deny a hard one. A metric the tracker
        has had no decision for is allowed. An allowed consume's usage is queued under its
        key (see `record_later`)."""
        org_id, metric = str(call.org_id or call.body["org_id"]), str(call.body["metric"])
        amount = int(call.body.get("amount", call.body.get("estimate", 0)))
        chosen = _choice(choice) or self.on_unavailable
        if chosen is None:
            with self._lock:
                known = self._enforcement.get((org_id, metric))
            chosen = "deny" if known == "hard" else "allow"
        allowed = chosen == "allow"
        self._core.ledger.count("unavailable")
        self._core.ledger.log_once(
            f"unavailable:{chosen}",
            logging.WARNING,
            "quota decisions are made without the kernel (on_unavailable: %s): %s",
            chosen,
            error,
        )
        if allowed and consume_key is not None:
            self.record_later(org_id, metric, amount, consume_key, datetime.now(UTC))
        return Decision(
            allowed=allowed,
            reason=UNAVAILABLE,
            message="The usage limit could not be checked just now; "
            + ("going ahead." if allowed else "please try again in a moment."),
            metric=metric,
            requested=amount,
            consumed=allowed and consume_key is not None,
        )

    def record_later(self, org_id: str, metric: str, quantity: int, key: str, at: datetime) -> None:
        """Queue usage decided without the kernel as an event under `key`, timed `at` (when
        it was decided), sent like any tracked event. If the consume (or commit) did reach
        the kernel and only its answer was lost, the kernel recorded an event under the key
        with a time of its own choosing, which it does not compare: this one repeats it (a
        duplicate, counted once). If it did not, this one records it."""
        self._core.recorder.track(org_id, metric, quantity, key, at)


def _choice(value: object) -> OnUnavailable | None:
    if value is None or value == "allow" or value == "deny":
        return value
    raise ValueError(f"on_unavailable must be 'allow' or 'deny', not {value!r}")


class ReservationError(TrackerError):
    """A reservation settled out of turn: committed again with another quantity, or
    committed after it was released."""


class _Reservation:
    """What both reservation handles hold and how they change state; the calls are theirs."""

    def __init__(self, gate: Gate, call: Request, choice: OnUnavailable | None) -> None:
        self._gate = gate
        self._call = call
        self._choice = choice
        self._made_at = datetime.now(UTC)
        self.id: str | None = None
        """The kernel's id (`rsv_...`); None when it was made without the kernel."""
        self.decision: Decision | None = None
        self.status = "new"
        """`held`, `committed`, `released`, or `expired` (its TTL ended before it was
        settled; it can still be committed). A refused one raises QuotaExceeded."""
        self.committed_quantity: int | None = None

    @property
    def org_id(self) -> str:
        return str(self._call.body["org_id"])

    @property
    def metric(self) -> str:
        return str(self._call.body["metric"])

    @property
    def idempotency_key(self) -> str:
        return str(self._call.body["idempotency_key"])

    def _made(self, answer: dict[str, Any] | None, error: TransportError | None) -> None:
        """The kernel's answer to the reservation, or why it could not be asked."""
        if answer is not None:
            self.decision = self._gate.learned(self.org_id, answer["decision"])
            self.id = str(answer["id"])
            self.status = str(answer["status"])  # a retried key: its state now
            self.committed_quantity = answer.get("committed_quantity")
        else:
            assert error is not None
            self.decision = self._gate.unreachable(self._call, self._choice, error)
            self.status = "held" if self.decision.allowed else "refused"
        if self.status == "refused":
            raise QuotaExceeded(self.decision)

    def _commit_call(self, quantity: object) -> tuple[int, Request | None]:
        """The checked quantity, and the call to make (None: nothing to ask the kernel)."""
        checked = check_quantity(quantity)
        if self.status == "committed" and self.committed_quantity == checked:
            return checked, None  # a repeat answers the same, as the kernel's does
        if self.status not in ("held", "expired"):  # an expired one still takes its usage
            raise ReservationError(f"a {self.status} reservation cannot be committed")
        if self.id is None:
            self._committed(checked, None)
            return checked, None
        return checked, Request(f"{RESERVATIONS_PATH}/{self.id}/commit", {"quantity": checked})

    def _committed(self, quantity: int, error: TransportError | None) -> None:
        """The commit was recorded; or, made without the kernel (or with it unreachable
        now), its usage is queued under the reservation's key."""
        if error is not None or self.id is None:  # dated as the kernel dates it: when reserved
            self._gate.record_later(
                self.org_id, self.metric, quantity, self.idempotency_key, self._made_at
            )
        self.status, self.committed_quantity = "committed", quantity

    def _release_call(self) -> Request | None:
        if self.status != "held":
            return None
        self.status = "released"
        if self.id is None:
            return None
        return Request(f"{RESERVATIONS_PATH}/{self.id}/release", {})


class Reservation(_Reservation):
    """Units held against the org's limit while work of unknown size runs: `commit(actual)`
    records what it used (even beyond the estimate) and gives the rest back; `release()`
    gives everything back; leaving the `with` block without either releases it. Made by
    `UsageTracker.reserve()`."""

    def __init__(
        self,
        gate: Gate,
        call: Request,
        choice: OnUnavailable | None,
        post: Callable[[Request], dict[str, Any]],
    ) -> None:
        super().__init__(gate, call, choice)
        self._post = post
        try:
            answer, error = post(call), None
        except TransportError as exc:
            answer, error = None, unreachable(exc)
        self._made(answer, error)

    def commit(self, quantity: int) -> None:
        """Record `quantity` as the work's usage (counted in full) and release the hold.
        With the kernel unreachable, the usage is queued and recorded once it is back."""
        checked, call = self._commit_call(quantity)
        if call is None:
            return
        try:
            self._post(call)
            self._committed(checked, None)
        except TransportError as exc:
            self._committed(checked, unreachable(exc))

    def release(self) -> None:
        """Give the held units back (unreachable kernel: they come back by the TTL)."""
        call = self._release_call()
        if call is not None:
            with contextlib.suppress(TransportError):
                self._post(call)

    def __enter__(self) -> Reservation:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


class AsyncReservation(_Reservation):
    """The asyncio counterpart of `Reservation`: `await r.commit(actual)`, `await
    r.release()`; made by `AsyncUsageTracker.reserve()`, used as `async with` (or awaited
    and settled by hand)."""

    def __init__(
        self,
        gate: Gate,
        call: Request,
        choice: OnUnavailable | None,
        post: Callable[[Request], Awaitable[dict[str, Any]]],
    ) -> None:
        super().__init__(gate, call, choice)
        self._post = post

    async def _make(self) -> AsyncReservation:
        if self.status == "new":
            try:
                answer, error = await self._post(self._call), None
            except TransportError as exc:
                answer, error = None, unreachable(exc)
            self._made(answer, error)
        return self

    def __await__(self) -> Generator[Any, None, AsyncReservation]:
        return self._make().__await__()

    async def commit(self, quantity: int) -> None:
        """See `Reservation.commit`."""
        checked, call = self._commit_call(quantity)
        if call is None:
            return
        try:
            await self._post(call)
            self._committed(checked, None)
        except TransportError as exc:
            self._committed(checked, unreachable(exc))

    async def release(self) -> None:
        """See `Reservation.release`."""
        call = self._release_call()
        if call is not None:
            with contextlib.suppress(TransportError):
                await self._post(call)

    async def __aenter__(self) -> AsyncReservation:
        return await self._make()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.release()


def unreachable(error: TransportError) -> TransportError:
    """`error` if it says the kernel is out of reach for now (retryable); else raise it:
    a refused key, an unknown metric, a key reused for other usage are the caller's to fix."""
    if not error.retryable:
        raise error
    return error
