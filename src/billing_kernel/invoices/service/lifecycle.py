"""The invoice lifecycle: the upcoming one (a draft, recomputed on read), closing billing
periods into finalized invoices numbered without gaps, paying and voiding them. Each is
computed by `drafting.py`, the same way `verification.py` recomputes it (see `rules`)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal

from billing_kernel.common.periods import BillingPeriod
from billing_kernel.common.validation import validate_text
from billing_kernel.config import Settings
from billing_kernel.credits.service import CreditService
from billing_kernel.db.database import failure_reason
from billing_kernel.db.unit_of_work import Transactions, UnitOfWork
from billing_kernel.discounts.service import DiscountService
from billing_kernel.errors import (
    AmountOutOfBounds,
    BillingError,
    DatabaseUnavailable,
    EventsForgotten,
    InvalidInput,
    InvoiceNotFound,
    InvoiceNotOpen,
    InvoicePaid,
    NothingToCredit,
)
from billing_kernel.events.service import EventLog
from billing_kernel.invoices.repository import InvoiceRepository
from billing_kernel.invoices.rules import (
    Backtest,
    Estimate,
    InvoiceDraft,
    InvoiceLine,
    StoredInvoice,
    Subscription,
    change_lines,
    close_failed_event,
    closes_at,
    credit_applied_line,
    estimate_notes,
    in_force,
    require_closed,
    usage_of,
)
from billing_kernel.invoices.service.backtest import PlanBacktests
from billing_kernel.invoices.service.drafting import InvoiceDrafts, stored_line
from billing_kernel.invoices.service.verification import InvoiceVerification
from billing_kernel.members.service import MemberService
from billing_kernel.metrics.rules import Tally
from billing_kernel.metrics.service import MetricService
from billing_kernel.orgs.rules import billable
from billing_kernel.plans.rules import Plan
from billing_kernel.plans.service import PlanService
from billing_kernel.quota.service import QuotaService
from billing_kernel.subscriptions.service.lifecycle import SubscriptionService
from billing_kernel.summary.rules import OrgBillingSummary
from billing_kernel.summary.service import SummaryService
from billing_kernel.usage.service.history import UsageReader

SAMPLE_KEYS = 5

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Explained:
    """One line of a finalized invoice, with the events behind it."""

    invoice: StoredInvoice
    number: int
    events: int
    """How many usage events the line bills (usage and adjustment lines; 0 for fees)."""
    sample_keys: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class CloseFailure:
    """An org whose invoice for a period could not be made, and why."""

    org_id: str
    period: BillingPeriod
    reason: str


@dataclass(frozen=True, slots=True)
class CloseReport:
    closed: tuple[StoredInvoice, ...]
    """The invoices this call finalized."""
    failed: tuple[CloseFailure, ...] = ()
    """The orgs it could not invoice (each tried in its own transaction: the others were)."""


class InvoiceService:
    def __init__(
        self,
        transactions: Transactions,
        settings: Settings,
        clock: Callable[[], datetime],
        *,
        metrics: MetricService,
        plans: PlanService,
        subscriptions: SubscriptionService,
        quota: QuotaService,
        summary: SummaryService,
        members: MemberService,
        usage: UsageReader,
        events: EventLog,
        credits: CreditService,
        discounts: DiscountService,
    ) -> None:
        self._tx = transactions
        self._settings = settings
        self._clock = clock
        self._metrics = metrics
        self._subscriptions = subscriptions
        self._summary = summary
        self._events = events
        self._plans = plans
        self._credits = credits
        self._usage = usage
        self._drafts = InvoiceDrafts(
            metrics=metrics,
            plans=plans,
            quota=quota,
            members=members,
            usage=usage,
            discounts=discounts,
        )
        self._verification = InvoiceVerification(
            transactions, metrics, self._drafts, credits, usage, discounts
        )
        self._backtests = PlanBacktests(
            transactions, clock, self.grace, plans=plans, drafts=self._drafts, usage=usage
        )

    @property
    def grace(self) -> timedelta:
        return timedelta(hours=self._settings.late_event_grace_hours)

    async def upcoming(
        self,
        org_id: str,
        uow: UnitOfWork | None = None,
        *,
        change: Subscription | None = None,
        summary: OrgBillingSummary | None = None,
    ) -> InvoiceDraft:
        """The org's invoice for the current period as it stands now (a draft): the fees of
        the plans it has been on this period, its usage so far priced by the plan it is on,
        and adjustments for late events of periods already invoiced; with `change`, as it
        would stand after that change. `summary`: the org's current summary, if the caller
        has just read it in `uow`. OrgNotFound for an unknown org."""
        period = BillingPeriod.containing(self._clock())
        async with self._tx.join(uow) as unit:
            if summary is None or summary.period != period:
                summary = await self._summary.summary(org_id, unit)
            used = {
                line.metric.key: line.used if line.peak is None else line.peak
                for line in summary.usage
            }
            late = await InvoiceRepository(unit).unbilled(
                org_id, period.key, await self._drafts.latest(unit)
            )
            history = await self._drafts.history(org_id, period, unit)
            if not history:  # an org whose state predates its history: on its plan since
                state = summary.state
                history = [Subscription(state.created_at, summary.plan, billable(state.status))]
            if change is not None:
                history = [*history, change]
            computed = await self._drafts.compute(
                org_id, period, history, used, late, unit, self._clock()
            )
            return computed.draft

    async def estimate(
        self, org_id: str, period: BillingPeriod | None = None, uow: UnitOfWork | None = None
    ) -> tuple[OrgBillingSummary, Estimate]:
        """The org's summary of `period` (default: the current month) and what the month
        comes to, one figure for every reader: the current month's upcoming invoice total
        (trials, proration and plan changes included); a month invoiced, its invoice's
        total, its usage against the plan that priced it; another month, its usage priced
        by the org's plan as it is now, with a note that says so."""
        current = BillingPeriod.containing(self._clock())
        period = period or current
        async with self._tx.begin(uow) as unit:
            if period == current:
                summary = await self._summary.summary(org_id, unit)
                draft = await self.upcoming(org_id, unit, summary=summary)
                notes = estimate_notes(draft, summary.plan.monthly_price, summary.estimated_overage)
                return summary, Estimate(draft.total, notes=notes)
            invoice = await InvoiceRepository(unit).live_invoice(org_id, period.key)
            if invoice is None:
                summary = await self._summary.summary(org_id, unit, period=period)
                said = "has not started" if period.key > current.key else "is not invoiced"
                note = f"{period.label} {said}: priced by the org's plan as it is now"
                total = summary.plan.monthly_price + summary.estimated_overage
                return summary, Estimate(total, notes=(note,))
            plan = await self._plans.get(invoice.plan_slug, unit, version=invoice.plan_version)
            summary = await self._summary.summary(org_id, unit, period=period, plan=plan)
            return summary, Estimate(invoice.total, invoice, (f"invoiced as {invoice.number}",))

    async def change_lines(
        self, org_id: str, change: Subscription, uow: UnitOfWork | None = None
    ) -> tuple[InvoiceLine, ...]:
        """The lines `change` would add to the org's upcoming invoice: a credit for the rest
        of the period on what it is on, and a charge for the rest on what it moves to (see
        `rules.change_lines`)."""
        period = BillingPeriod.containing(change.since)
        async with self._tx.read(uow) as unit:
            history = await self._drafts.history(org_id, period, unit)
        return tuple(change_lines(period, history, change))

    async def close(
        self, org_id: str, period: BillingPeriod, uow: UnitOfWork | None = None
    ) -> StoredInvoice | None:
        """Finalize the org's invoice for `period`, and first those of its earlier periods
        that have none: each once, numbered in order. Idempotent and safe to run from
        several processes at once. PeriodNotClosed before `period` closes; None when the org
        was not subscribed in it."""
        require_closed(period, self.grace, self._clock())
        await self._subscriptions.apply_due_changes(
            uow
        )  # a downgrade due is in force from when due
        async with self._tx.read(uow) as unit:
            history = await self._drafts.history(org_id, period, unit)
        if not history:
            return None
        first = BillingPeriod.containing(history[0].since)
        invoice = None
        month = first
        while month.key <= period.key:
            invoice = await self._close_one(org_id, month, uow) or invoice
            month = month.next()
        return invoice

    async def close_due(self, uow: UnitOfWork | None = None) -> CloseReport:
        """Finalize every invoice that is due: for each period that has closed, oldest
        first, each org subscribed in it that has no invoice for it yet, each in its own
        transaction (unless `uow` is given): an org that cannot be closed is reported, with
        an `invoice.close_failed` event, and the others are closed (its later periods wait:
        an invoice never bills usage of a period before it that has none). Idempotent and safe to
        run from several processes at once (`billing-kernel invoices close`, and the worker
        every BILLING_CLOSE_INTERVAL_SECONDS). DatabaseUnavailable stops the round."""
        now = self._clock()
        await self._subscriptions.apply_due_changes(
            uow
        )  # a downgrade due is in force from when due
        async with self._tx.read(uow) as unit:
            first = await InvoiceRepository(unit).first_change()
        closed: list[StoredInvoice] = []
        failed: list[CloseFailure] = []
        stuck: set[str] = set()
        if first is None:
            return CloseReport(())
        plans: dict[tuple[str, int], Plan] = {}  # versions do not change: read each once
        month = BillingPeriod.containing(first)
        while closes_at(month, self.grace) <= now:
            async with self._tx.read(uow) as unit:
                org_ids = await InvoiceRepository(unit).orgs_to_invoice(month.key, month.end)
            for org_id in org_ids:
                if org_id in stuck:
                    continue  # its later months wait for the one that failed
                try:
                    made = await self._close_one(org_id, month, uow, made_only=True, plans=plans)
                except DatabaseUnavailable:
                    raise
                except Exception as exc:  # one org's fault must not stop every org's invoice
                    if uow is not None:
                        raise  # the caller's transaction is spoilt: it decides
                    failed.append(await self._close_failed(org_id, month, exc))
                    stuck.add(org_id)
                    continue
                if made is not None:
                    closed.append(made)
            month = month.next()
        return CloseReport(tuple(closed), tuple(failed))

    async def _close_failed(
        self, org_id: str, period: BillingPeriod, exc: Exception
    ) -> CloseFailure:
        """Record that the org's invoice for `period` could not be made: logged, and an
        `invoice.close_failed` event for the operator's endpoints."""
        reason = exc.message if isinstance(exc, BillingError) else failure_reason(exc)
        logger.error("could not invoice org %s for %s: %s", org_id, period.label, reason)
        await self._events.record([close_failed_event(org_id, period.key, reason, self._clock())])
        return CloseFailure(org_id, period, reason)

    async def _close_one(
        self,
        org_id: str,
        period: BillingPeriod,
        uow: UnitOfWork | None,
        *,
        made_only: bool = False,
        voiding: tuple[StoredInvoice, str] | None = None,
        plans: dict[tuple[str, int], Plan] | None = None,
    ) -> StoredInvoice | None:
        """The org's invoice for `period`, made now if it has none (or, `voiding`, made to
        replace the invoice given, voided with the reason given); with `made_only`, None
        unless this call made it."""
        async with self._tx.begin(uow) as unit:
            repo = InvoiceRepository(unit)
            await repo.lock_org(org_id)
            now = self._clock()
            if voiding is None:
                if await repo.live_invoice_id(org_id, period.key) is not None:
                    return None if made_only else await repo.live_invoice(org_id, period.key)
            else:
                old, reason = voiding
                await self._refuse_forgotten(old, unit)
                if not await repo.set_void(old.invoice_id, reason, now):
                    raise _not_open(await self.get(old.invoice_id, uow=unit), "voided")
                await self._credits.release(old.invoice_id, unit)  # its correction draws again
            history = await self._drafts.history(org_id, period, unit, plans)
            if not in_force(period, history):
                return None
            invoice_id = f"inv_{uuid.uuid4().hex[:24]}"
            billed = await repo.mark_events(
                org_id,
                invoice_id,
                through=period.key,
                moved_from=None if voiding is None else voiding[0].invoice_id,
            )
            used = usage_of(period, billed, await self._metrics.by_key(unit))
            seats = await self._drafts.seat_peaks(org_id, period, unit)
            late = {key: b for key, b in billed.items() if key[0] < period.key}
            computed = await self._drafts.compute(
                org_id,
                period,
                history,
                {**used, **seats},
                late,
                unit,
                now,
                events=billed,
                billed_by=invoice_id,
            )
            draft = computed.draft
            beyond = draft.out_of_bounds()
            if beyond is not None:
                raise AmountOutOfBounds(
                    f"{org_id}'s invoice for {period.label} cannot be made: {beyond}",
                    org_id=org_id,
                    period=period.label,
                )
            # An org's credit balance is drawn by its invoices as they are made, the lock on
            # the org keeping two from drawing at once.
            drawn, held = await self._credits.to_draw(org_id, draft.currency, draft.total, unit)
            applied = sum((amount for _, amount in drawn), Decimal(0))
            billed_lines = draft.lines
            if applied:
                billed_lines += (credit_applied_line(applied, held, draft.plan),)
            sequence = await repo.next_number()
            invoice = StoredInvoice(
                invoice_id=invoice_id,
                org_id=org_id,
                period_start=period.key,
                number=f"{self._settings.invoice_prefix}{sequence:06d}",
                sequence=sequence,
                status="open",
                currency=draft.currency,
                subtotal=draft.subtotal,
                total=draft.total - applied,
                plan_slug=draft.plan.slug,
                plan_version=draft.plan.version,
                bills_usage=draft.bills_usage,
                issued_at=now,
                paid_at=None,
                voided_at=None,
                void_reason=None,
                replaces=None if voiding is None else voiding[0].invoice_id,
            )
            lines = tuple(stored_line(n, line, period) for n, line in enumerate(billed_lines, 1))
            await repo.insert(invoice, lines, computed.usage)
            await self._credits.take(org_id, invoice_id, drawn, unit)
            usage = tuple(sorted(computed.usage, key=lambda u: (u.period_start, u.metric)))
            return replace(invoice, lines=lines, usage=usage)  # as `get` would read it

    async def list_invoices(
        self,
        org_id: str | None,
        *,
        before: int | None = None,
        limit: int = 50,
        uow: UnitOfWork | None = None,
    ) -> list[StoredInvoice]:
        """Up to `limit` finalized invoices, newest first, numbered before `before` (a
        cursor: the last one's `sequence`); of one org, or of every org."""
        async with self._tx.read(uow) as unit:
            return await InvoiceRepository(unit).list_invoices(org_id, before=before, limit=limit)

    async def get(
        self, invoice_id: str, org_id: str | None = None, uow: UnitOfWork | None = None
    ) -> StoredInvoice:
        """A finalized invoice with its lines (one of `org_id`'s, when given);
        InvoiceNotFound otherwise."""
        async with self._tx.read(uow) as unit:
            found = await InvoiceRepository(unit).get(invoice_id)
        if found is None or (org_id is not None and found.org_id != org_id):
            raise InvoiceNotFound(f"no invoice {invoice_id!r}", invoice_id=invoice_id)
        return found

    async def by_number(self, number: str, uow: UnitOfWork | None = None) -> StoredInvoice:
        """The invoice numbered `number` (or with that id); InvoiceNotFound otherwise."""
        async with self._tx.read(uow) as unit:
            repo = InvoiceRepository(unit)
            found = await repo.get(await repo.id_of_number(number) or number)
        if found is None:
            raise InvoiceNotFound(f"no invoice {number!r}", invoice_id=number)
        return found

    async def explain(
        self,
        invoice_id: str,
        number: int,
        org_id: str | None = None,
        uow: UnitOfWork | None = None,
    ) -> Explained:
        """Line `number` of an invoice with the events behind it: how many, and the first
        few of their idempotency keys (none once its month's events are forgotten: then how
        many the invoice recorded). InvoiceNotFound for no such invoice or line."""
        async with self._tx.read(uow) as unit:
            invoice = await self.get(invoice_id, org_id, unit)
            line = next((line for line in invoice.lines if line.number == number), None)
            if line is None:
                raise InvoiceNotFound(
                    f"invoice {invoice.number} has no line {number}", invoice_id=invoice_id
                )
            events, keys = 0, []
            if line.metric is not None:
                at = (line.period_start, line.metric)
                billed = await InvoiceRepository(unit).billed_events(invoice_id)
                events = billed.get(at, Tally()).events
                if line.period_start in await self._usage.forgotten_months(unit):
                    recorded = (u.events for u in invoice.usage if (u.period_start, u.metric) == at)
                    events = next(recorded, events)
                keys = await InvoiceRepository(unit).sample_keys(
                    invoice_id, line.period_start, line.metric, SAMPLE_KEYS
                )
            return Explained(invoice, number, events, tuple(keys))

    async def mark_paid(
        self, invoice_id: str, uow: UnitOfWork | None = None, *, paid_by: str | None = None
    ) -> StoredInvoice:
        """Record that the invoice was paid: by the payment `paid_by` (a collection through
        Stripe), or, with None, outside the kernel (a bank transfer, marked by hand). Only
        from `open`: in one statement that checks it, so a void that comes first wins.
        Idempotent for a paid one; InvoiceNotOpen for a void one."""
        async with self._tx.begin(uow) as unit:
            invoice = await self.by_number(invoice_id, unit)
            if invoice.status == "open" and await InvoiceRepository(unit).set_paid(
                invoice.invoice_id, self._clock(), paid_by
            ):
                return await self.get(invoice.invoice_id, uow=unit)
            now = await self.get(invoice.invoice_id, uow=unit)  # as the statement found it
            if now.status == "paid":
                return now
            raise _not_open(now, "paid")

    async def credited(self, uow: UnitOfWork | None = None) -> list[StoredInvoice]:
        """Every invoice with a credit recorded, with its lines."""
        async with self._tx.read(uow) as unit:
            repo = InvoiceRepository(unit)
            found = [await repo.get(invoice_id) for invoice_id in await repo.credited_ids()]
        return [invoice for invoice in found if invoice is not None]

    async def add_credit(self, invoice: StoredInvoice, amount: Decimal, uow: UnitOfWork) -> None:
        """Record a credit note of `amount` on a paid invoice as it was read (`invoice`):
        in one statement that checks it is still paid and credited as read, so of two
        credit notes racing on one invoice, one is written: NothingToCredit for the other."""
        if not await InvoiceRepository(uow).add_credit(
            invoice.invoice_id, invoice.credited, amount
        ):
            raise NothingToCredit(
                f"invoice {invoice.number} was credited or changed meanwhile: read it again"
            )

    async def void(
        self, invoice_id: str, reason: str, uow: UnitOfWork | None = None
    ) -> StoredInvoice:
        """Void an open invoice, with the reason, and make the corrected one that replaces
        it (a new number; the same events, the org's terms as they are now); returns the
        correction. Only from `open`, checked by the statement that voids it: InvoicePaid for
        a paid one (a paid invoice is corrected by a credit note), InvoiceNotOpen for a void
        one; the loser of two racing changes gets one of them."""
        reason = validate_text(reason, "reason", 500) or ""
        if not reason.strip():
            raise InvalidInput("a void needs a reason", field="reason")
        async with self._tx.begin(uow) as unit:
            invoice = await self.by_number(invoice_id, unit)
            if invoice.status != "open":
                raise _not_open(invoice, "voided")
            period = BillingPeriod.starting(invoice.period_start)
            made = await self._close_one(invoice.org_id, period, unit, voiding=(invoice, reason))
            assert made is not None, "a period once invoiced stays subscribed"
            return made

    async def _refuse_forgotten(self, invoice: StoredInvoice, unit: UnitOfWork) -> None:
        """EventsForgotten if the invoice bills a month whose events are forgotten: its
        correction would be recomputed from events that are gone. Read under the org's lock,
        which each batch of forgetting takes too, so that a month is either forgotten before
        this reads it or forgotten after the void has moved its events."""
        gone = {u.period_start for u in invoice.usage} & await self._usage.forgotten_months(unit)
        if gone:
            months = ", ".join(f"{month:%Y-%m}" for month in sorted(gone))
            raise EventsForgotten(
                f"invoice {invoice.number} bills usage of {months}, whose events are forgotten "
                "(BILLING_EVENT_RETENTION_MONTHS): its correction cannot be recomputed, so it "
                "is not voided; once paid, correct it with a credit note",
                invoice_id=invoice.invoice_id,
            )

    async def backtest(
        self,
        draft: Plan,
        period: BillingPeriod,
        org_ids: Collection[str] | None = None,
        uow: UnitOfWork | None = None,
    ) -> Backtest:
        """What a draft of a plan would have invoiced for a closed month, beside what was
        (`backtest.py`); nothing is written."""
        return await self._backtests.backtest(draft, period, org_ids, uow)

    async def verify(self, uow: UnitOfWork | None = None) -> list[str]:
        """Recompute every invoice that counts (open or paid) from what it recorded, and
        check that the numbers, void ones included, have no gaps (`verification.py`): every
        difference found, in words (none: the invoices are reproducible)."""
        return await self._verification.verify(uow)


def _not_open(invoice: StoredInvoice, change: str) -> InvoiceNotOpen:
    """Why an invoice in the state it is in cannot be `change`d (only an open one can)."""
    if invoice.status == "paid":
        return InvoicePaid(
            f"invoice {invoice.number} is paid: a paid invoice is not {change}",
            invoice_id=invoice.invoice_id,
        )
    return InvoiceNotOpen(
        f"invoice {invoice.number} is {invoice.status}: only an open one is {change}",
        invoice_id=invoice.invoice_id,
    )
