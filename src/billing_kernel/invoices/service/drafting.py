"""An invoice computed from what it is made of: the org's subscription history, the usage of
its period and the late usage of earlier ones, priced by the plan versions and the limits in
force (or those an invoice recorded). The upcoming invoice, closing a period and verifying an
invoice all compute it here, the same way."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime

from billing_kernel.common.periods import BillingPeriod
from billing_kernel.db.unit_of_work import UnitOfWork
from billing_kernel.discounts.service import DiscountService
from billing_kernel.invoices.repository import InvoiceRepository
from billing_kernel.invoices.rules import (
    InvoiceDraft,
    InvoiceLine,
    LateUsage,
    StoredInvoice,
    StoredLine,
    StoredUsage,
    Subscription,
    draft_invoice,
    in_force,
    usage_of,
)
from billing_kernel.members.service import MemberService
from billing_kernel.metrics.rules import Aggregation, Metric, Position, Tally
from billing_kernel.metrics.service import MetricService
from billing_kernel.orgs.rules import billable
from billing_kernel.plans.rules import Plan
from billing_kernel.plans.service import PlanService
from billing_kernel.quota.rules import effective_terms
from billing_kernel.quota.service import QuotaService
from billing_kernel.usage.service.history import UsageReader


@dataclass(frozen=True, slots=True)
class Computed:
    """An invoice as computed: its draft, and the usage it bills by period and metric."""

    draft: InvoiceDraft
    usage: tuple[StoredUsage, ...]


class InvoiceDrafts:
    """Invoices computed from their records, for the lifecycle and for verification."""

    def __init__(
        self,
        *,
        metrics: MetricService,
        plans: PlanService,
        quota: QuotaService,
        members: MemberService,
        usage: UsageReader,
        discounts: DiscountService,
    ) -> None:
        self._metrics = metrics
        self._discounts = discounts
        self._plans = plans
        self._quota = quota
        self._members = members
        self._usage = usage

    async def compute(
        self,
        org_id: str,
        period: BillingPeriod,
        history: list[Subscription],
        used: Mapping[str, int],
        late: Mapping[tuple[date, str], Tally],
        unit: UnitOfWork,
        at: datetime,
        *,
        events: Mapping[tuple[date, str], Tally] | None = None,
        as_of: StoredInvoice | None = None,
        recorded_late: Mapping[tuple[date, str], int] | None = None,
        replaced: Plan | None = None,
        billed_by: str | None = None,
        recorded_split: Mapping[tuple[date, str], Mapping[str, int]] | None = None,
    ) -> Computed:
        """The org's invoice for `period` made at `at`, from its `history`, the usage of the
        period (`used`, by metric) and the `late` usage of earlier periods (priced as each
        was, against what its invoices billed before this one: `as_of`, or now), less the
        discounts of the coupons applied to the org at `at` that cover the period. Late usage whose
        lines are forgotten comes as `recorded_late`: what the invoice recorded it added.
        `replaced`: the plan `as_of` was made by, when the history holds a draft in its
        place; what the invoice recorded as included where it was that plan's becomes the
        draft's. A metric priced per value reads each value's usage from the lines the
        invoice `billed_by` billed (None: those not billed yet), or for months whose lines
        are forgotten from `recorded_split`."""
        catalogue = await self._metrics.catalogue(unit)
        by_key = {metric.key: metric for metric in catalogue}
        subs = in_force(period, history)
        at_end = subs[-1].plan
        overrides = await self._quota.overrides(org_id, unit)
        included = {m.key: effective_terms(at_end, m.key, overrides).limit for m in catalogue}
        if as_of is not None:  # what the invoice was billed against, as it recorded it
            against = {u.metric: u.included for u in as_of.usage if u.period_start == period.key}
            if replaced is not None:  # where it followed its plan, it follows the draft
                against = {
                    metric: (
                        at_end.allowance(metric).included_quantity
                        if limit == replaced.allowance(metric).included_quantity
                        else limit
                    )
                    for metric, limit in against.items()
                }
            included.update(against)
        repo = InvoiceRepository(unit)
        recorded_values = recorded_split or {}

        async def by_value(start: date, metric: str, plan: Plan) -> dict[str, int] | None:
            """The usage of each value `plan` prices `metric` by (None: it prices none)."""
            dimension = plan.allowance(metric).dimension
            if dimension is None:
                return None
            if (start, metric) in recorded_values:
                return dict(recorded_values[start, metric])
            return await self._usage.value_totals(
                org_id,
                start,
                metric,
                dimension.property,
                dimension.values(),
                invoice_id=billed_by,
                unbilled=billed_by is None,
                uow=unit,
            )

        split: dict[str, dict[str, int]] = {}
        for m in catalogue:
            if used.get(m.key, 0):
                values = await by_value(period.key, m.key, at_end)
                if values is not None:
                    split[m.key] = values
        late_split: dict[tuple[date, str], dict[str, int]] = {}
        late_usage = []
        added: dict[tuple[date, str], int] = {}  # what late lines add to their period's usage
        recorded = recorded_late or {}
        for start, metric in sorted(set(late) | set(recorded)):
            earlier = await repo.live_invoice(org_id, start, as_of)
            before, last = 0, None
            if earlier is not None:
                before = (await repo.usage_billed_before(org_id, start, as_of)).get(metric, 0)
                last = (await repo.last_billed(org_id, start, as_of)).get(metric)
            if (start, metric) in recorded:
                added[start, metric] = recorded[start, metric]
            elif metric in by_key:
                added[start, metric] = by_key[metric].usage_added(late[start, metric], before, last)
            else:
                added[start, metric] = late[start, metric].quantity
            if earlier is None or metric not in by_key:
                continue  # no plan then: nothing to price it by
            plan = await self._plans.get(earlier.plan_slug, unit, version=earlier.plan_version)
            snapshot = {u.metric: u.included for u in earlier.usage if u.period_start == start}
            values = await by_value(start, metric, plan)
            billed_split: dict[str, int] = {}
            if values is not None:
                late_split[start, metric] = values
                billed_split = await repo.split_billed_before(org_id, start, metric, as_of)
            late_usage.append(
                LateUsage(
                    period=BillingPeriod.starting(start),
                    metric=by_key[metric],
                    billed=before,
                    late=added[start, metric],
                    included=snapshot.get(metric, plan.allowance(metric).included_quantity),
                    plan=plan,
                    billable=earlier.bills_usage,
                    billed_split=billed_split,
                    late_split=values or {},
                )
            )
        coupons = await self._discounts.in_effect(org_id, period, at, unit)
        draft = draft_invoice(
            org_id, period, history, catalogue, used, included, late_usage, coupons, split
        )
        counted = events or {}
        usage = [
            StoredUsage(
                period.key,
                m.key,
                used.get(m.key, 0),
                counted.get((period.key, m.key), Tally()).events,
                included[m.key],
                _last_billed(m, counted.get((period.key, m.key), Tally())),
                split.get(m.key),
            )
            for m in catalogue
        ] + [
            StoredUsage(
                start,
                metric,
                added[start, metric],
                b.events,
                None,
                _last_billed(by_key[metric], b) if metric in by_key else None,
                late_split.get((start, metric)),
            )
            for (start, metric), b in sorted(late.items())
        ]
        return Computed(draft, tuple(usage))

    async def recompute(
        self,
        invoice: StoredInvoice,
        forgotten: set[date],
        unit: UnitOfWork,
        *,
        draft: Plan | None = None,
        plans: dict[tuple[str, int], Plan] | None = None,
    ) -> Computed:
        """The invoice computed again from the events it billed (for the months whose lines
        are `forgotten`, from the usage it recorded of them), the subscription history and
        the limits it recorded: what verification compares it with (`plans`: the plan
        versions read so far, a cache a caller recomputing many invoices shares). With a
        `draft` of its plan (a backtest), the draft stands in for every version of that plan
        in the history, and for what the plan included where the invoice followed the plan (an
        org's own limit stays its own)."""
        period = BillingPeriod.starting(invoice.period_start)
        repo = InvoiceRepository(unit)
        events = await repo.billed_events(invoice.invoice_id, await self.latest(unit))
        events = {key: b for key, b in events.items() if key[0] not in forgotten}
        catalogue = await self._metrics.catalogue(unit)
        used = usage_of(period, events, {m.key: m for m in catalogue})
        seats = {m.key for m in catalogue if m.aggregation is Aggregation.SEATS}
        used.update(
            {
                u.metric: u.quantity
                for u in invoice.usage
                if u.period_start == period.key and (u.metric in seats or period.key in forgotten)
            }
        )
        late = {key: b for key, b in events.items() if key[0] < period.key}
        recorded_late = {
            (u.period_start, u.metric): u.quantity
            for u in invoice.usage
            if u.period_start < period.key and u.period_start in forgotten
        }
        recorded_split = {
            (u.period_start, u.metric): u.split
            for u in invoice.usage
            if u.period_start in forgotten and u.split is not None
        }
        history = await self.history(invoice.org_id, period, unit, plans)
        replaced = None
        if draft is not None:
            history = [
                replace(sub, plan=draft) if sub.plan.slug == draft.slug else sub for sub in history
            ]
            replaced = await self._plans.get(invoice.plan_slug, unit, version=invoice.plan_version)
        return await self.compute(
            invoice.org_id,
            period,
            history,
            used,
            late,
            unit,
            invoice.issued_at,
            events=events,
            as_of=invoice,
            recorded_late=recorded_late,
            replaced=replaced,
            billed_by=invoice.invoice_id,
            recorded_split=recorded_split,
        )

    async def latest(self, unit: UnitOfWork) -> set[str]:
        """The metrics whose usage in a period is their last line's (see `Tally.last`)."""
        catalogue = await self._metrics.catalogue(unit)
        return {m.key for m in catalogue if m.aggregation is Aggregation.LATEST}

    async def history(
        self,
        org_id: str,
        period: BillingPeriod,
        unit: UnitOfWork,
        plans: dict[tuple[str, int], Plan] | None = None,
    ) -> list[Subscription]:
        """The org's subscriptions up to the end of `period`, each with its plan version
        (read once per `plans`, a cache the caller may share)."""
        plans = {} if plans is None else plans
        history = []
        for since, slug, version, status in await InvoiceRepository(unit).history(
            org_id, period.end
        ):
            if (slug, version) not in plans:
                plans[slug, version] = await self._plans.get(slug, unit, version=version)
            history.append(Subscription(since, plans[slug, version], billable(status)))
        return history

    async def seat_peaks(
        self, org_id: str, period: BillingPeriod, unit: UnitOfWork
    ) -> dict[str, int]:
        """Each seats metric's peak in `period`."""
        members_now = await self._members.seat_count(org_id, unit)
        return await self._usage.seat_peaks(org_id, period, members_now, unit)


def _last_billed(metric: Metric, lines: Tally) -> Position | None:
    """What an invoice keeps of the lines it billed of a latest: where the last stands."""
    return lines.last_at if metric.aggregation is Aggregation.LATEST else None


def stored_line(number: int, line: InvoiceLine, period: BillingPeriod) -> StoredLine:
    """Line `number` of `period`'s invoice as it is stored."""
    return StoredLine(
        number=number,
        kind=line.kind.value,
        description=line.description,
        amount=line.amount,
        formula=line.formula,
        plan_slug=line.plan_slug,
        plan_version=line.plan_version,
        period_start=(line.adjusts or period).key,
        metric=line.metric,
        quantity=line.quantity,
        unit_price=line.unit_price,
        unit_size=line.unit_size,
        starts_at=line.starts_at,
        coupon=line.coupon,
        dimension=line.dimension,
        dimension_value=line.dimension_value,
    )
