"""Recording a protocol's events: the customer ids resolved to orgs, and the batch recorded
all or nothing (as the incumbents answer a batch: one refused event refuses it whole); and
the reads the protocols answer from the kernel's own figures."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from billing_kernel.common.validation import validate_id
from billing_kernel.compat.rules import ForeignEvent, RefusedBatch, in_protocol_terms
from billing_kernel.db.unit_of_work import Transactions, UnitOfWork
from billing_kernel.errors import (
    BillingError,
    Forbidden,
    IdempotencyConflict,
    InvalidInput,
    OrgNotFound,
    UnknownMetric,
)
from billing_kernel.invoices.rules import InvoiceDraft
from billing_kernel.invoices.service import InvoiceService
from billing_kernel.orgs.service import OrgService
from billing_kernel.quota.rules import QuotaDecision
from billing_kernel.quota.service import QuotaService
from billing_kernel.summary.rules import OrgBillingSummary
from billing_kernel.summary.service import SummaryService
from billing_kernel.usage.rules import RecordStatus, UsageReport
from billing_kernel.usage.service import UsageReader, UsageService, count_outcomes

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ForeignBatchResult:
    orgs: tuple[str, ...]
    """The org each event counted for, in the order sent."""
    statuses: tuple[RecordStatus, ...]
    """ACCEPTED or DUPLICATE for each event, in the order sent."""
    times: tuple[datetime, ...]
    """When each event occurred (the receive time for one sent without a time)."""

    def count(self, status: RecordStatus) -> int:
        return sum(1 for s in self.statuses if s is status)


@dataclass(frozen=True, slots=True)
class CurrentUsage:
    """An org's period so far: usage against its plan, the upcoming invoice that prices it,
    and how many events each metric counted."""

    summary: OrgBillingSummary
    invoice: InvoiceDraft
    events: Mapping[str, int]
    value_events: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    """A metric priced per value: how many events each value it prices apart counted."""


class CompatService:
    def __init__(
        self,
        transactions: Transactions,
        *,
        usage: UsageService,
        usage_reader: UsageReader,
        orgs: OrgService,
        summary: SummaryService,
        invoices: InvoiceService,
        quota: QuotaService,
    ) -> None:
        self._tx = transactions
        self._usage = usage
        self._usage_reader = usage_reader
        self._orgs = orgs
        self._summary = summary
        self._invoices = invoices
        self._quota = quota

    async def ingest(
        self,
        parsed: Sequence[ForeignEvent | BillingError],
        *,
        only_org: str | None = None,
        conflict_is_duplicate: bool = False,
    ) -> ForeignBatchResult:
        """Record every event, each once per key and org, or none: RefusedBatch names each
        event refused (not parsed, invalid, for an unknown org when auto-creation is off, a
        key reused with another payload, unless `conflict_is_duplicate`: then it counts once,
        as first sent, is answered as a duplicate and logged) and nothing is written. An
        event `known_only` for a customer no org goes by is refused. With `only_org` (a key
        restricted to one org), an event whose customer id is not one of that org's names is
        refused before anything is looked up or recorded, all alike, whatever it names. An
        event of a name no metric counts is kept, counted by nothing, as the incumbents keep
        it (the native API refuses it)."""
        errors = {i: e for i, e in enumerate(parsed) if isinstance(e, BillingError)}
        events = [(i, e) for i, e in enumerate(parsed) if isinstance(e, ForeignEvent)]
        async with self._tx.begin() as unit:
            if only_org is not None:
                own = await self._orgs.names(only_org, unit)
                elsewhere = {i: _elsewhere() for i, e in events if e.customer not in own}
                if elsewhere:
                    raise RefusedBatch(sorted({**errors, **elsewhere}.items()))
            named = await self._orgs.resolve(
                {e.customer for _, e in events if isinstance(e.customer, str)}, unit
            )
            unknown = await self._unknown(
                [
                    named[e.customer]
                    for _, e in events
                    if e.known_only and isinstance(e.customer, str)
                ],
                unit,
            )
            for index, event in events:
                if event.known_only and named.get(str(event.customer)) in unknown:
                    errors[index] = InvalidInput("Customer not found", field=event.known_only)
            orgs = [
                named[e.customer] if isinstance(e.customer, str) else e.customer for _, e in events
            ]
            result = await self._usage.record_batch(
                [
                    UsageReport(org, None, None, e.key, e.occurred_at, e.properties or None, e.name)
                    for org, (_, e) in zip(orgs, events, strict=True)
                ],
                uow=unit,
                keep_uncounted=True,  # as every incumbent keeps an event no meter counts
            )
            conflicts: set[int] = set()
            repeated: list[tuple[str, str]] = []
            for (index, sent), outcome, org in zip(events, result.outcomes, orgs, strict=True):
                if isinstance(outcome.error, UnknownMetric):  # to a protocol: a bad name
                    errors[index] = InvalidInput(outcome.error.message, field="metric")
                elif isinstance(outcome.error, IdempotencyConflict) and conflict_is_duplicate:
                    conflicts.add(index)
                    repeated.append((str(org), str(sent.key)))
                    logger.warning(
                        "key %r of org %s reused with another payload: counted once, as "
                        "first sent, and answered as a duplicate",
                        sent.key,
                        sent.customer,
                    )
                elif outcome.error is not None:
                    errors[index] = in_protocol_terms(outcome.error, sent)
            if errors:
                raise RefusedBatch(sorted(errors.items()))  # rolls the whole batch back
            await self._usage.note_changed_repeats(repeated, uow=unit)  # read back with each
        count_outcomes(result.outcomes)  # committed
        return ForeignBatchResult(
            tuple(str(org) for org in orgs),
            tuple(
                RecordStatus.CONFLICT if index in conflicts else o.status
                for (index, _), o in zip(events, result.outcomes, strict=True)
            ),
            tuple(o.event.occurred_at for o in result.outcomes if o.event is not None),
        )

    async def _unknown(self, org_ids: list[str], unit: UnitOfWork) -> set[str]:
        """Which of `org_ids` are no org."""
        missing = set()
        for org_id in set(org_ids):
            try:
                await self._orgs.require(org_id, unit)
            except OrgNotFound:
                missing.add(org_id)
        return missing

    async def org_of(
        self, customer: str, *, only_org: str | None = None, uow: UnitOfWork | None = None
    ) -> str:
        """The org a protocol's customer id names (an alias, else the org id); OrgNotFound
        if there is none. With `only_org`, Forbidden (the same whatever it names) unless it
        is one of that org's names, before anything else is looked up."""
        customer = validate_id(customer, "customer")
        async with self._tx.begin(uow) as unit:
            if only_org is not None and customer not in await self._orgs.names(only_org, unit):
                raise _elsewhere()
            org_id = (await self._orgs.resolve([customer], unit))[customer]
            await self._orgs.require(org_id, unit)
            return org_id

    async def current_usage(self, org_id: str) -> CurrentUsage:
        """The org's current period: summary, upcoming invoice and event counts, read in
        one transaction."""
        async with self._tx.begin() as unit:
            summary = await self._summary.summary(org_id, unit)
            value_events = {}
            for key, terms in summary.plan.metrics.items():
                if terms.dimension is not None:
                    value_events[key] = await self._usage_reader.value_events(
                        org_id,
                        summary.period,
                        key,
                        terms.dimension.property,
                        terms.dimension.values(),
                        unit,
                    )
            return CurrentUsage(
                summary,
                await self._invoices.upcoming(org_id, unit, summary=summary),
                await self._usage_reader.event_counts(org_id, summary.period, unit),
                value_events,
            )

    async def entitlement(self, org_id: str, metric: str) -> QuotaDecision:
        """Whether the org may use one more unit of `metric` now, as the kernel decides it."""
        return await self._quota.check(org_id, metric, 1)


def _elsewhere() -> BillingError:
    """What a key restricted to one org is told of a customer id that is not one of its
    org's names: the same, whatever org (or none) that id names."""
    return Forbidden(
        "this API key is restricted to one org; the customer id is not that org's id or alias"
    )
