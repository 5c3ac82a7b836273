"""What the rating engine reads, for many subscriptions at once.

A billing run rates hundreds of subscriptions per unit of work; reading their plans, prices, discounts,
taxes, history and usage one subscription at a time would cost queries per subscription. ``rating_contexts``
reads them in a fixed number of queries whatever their number (plans and tax rates are shared between the
subscriptions that use them), and gives each subscription its ``RatingContext``. Rating then runs in
memory, and what it makes is written in sets (billruns.services.rating).

History is read only as far as rating needs it. Segments of a subscription cover its periods one after the
other from its first (a period is rated only once the one before it is), so the latest segment says which
periods are left to rate; lines already billed are read only where a new segment can depend on them: one-time
charges already made, periods after a cancellation (credits), and periods that receive late usage (tiers
count every unit of a period once).
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from functools import lru_cache

from django.db.models import OuterRef, Q, Subquery, Sum

from accounts.models import BillingProfile
from accounts.selectors import bill_units_of

from ..models import (
    BillSegment,
    CalculationLine,
    Discount,
    PlanComponent,
    Price,
    Subscription,
    TaxJurisdiction,
    TaxRate,
    UsageRecord,
    UsageToRate,
)
from ..periods import Period, period_containing

USAGE_KINDS = (CalculationLine.Kind.USAGE, CalculationLine.Kind.ALLOWANCE, CalculationLine.Kind.PRIOR)
RECURRING_KINDS = (CalculationLine.Kind.RECURRING, CalculationLine.Kind.CREDIT)
COUNTED_STATUSES = (BillSegment.Status.RATED, BillSegment.Status.BILLED, BillSegment.Status.DEBITED)


@dataclass
class BilledLine:
    """An already stored line of another segment of the subscription (what was billed for which days)."""

    component_id: int | None
    kind: str
    period_start: dt.date
    period_end: dt.date
    amount: Decimal


@dataclass
class PendingUsage:
    """A usage record waiting for rating."""

    id: int
    usage_type_id: int
    event_date: dt.date
    quantity: Decimal


@dataclass
class RatingContext:
    """Everything rating one subscription needs, read once (and kept up to date as periods are rated)."""

    subscription: Subscription
    cycle_day: int
    components: list[PlanComponent]
    prices: dict[int, list[Price]]  # component id -> prices (with tiers), by valid_from
    discounts: list[Discount]
    jurisdiction: TaxJurisdiction | None
    tax_rates: dict[int, list[TaxRate]]  # tax category id -> rates in the jurisdiction, by valid_from
    latest: BillSegment | None  # the subscription's latest segment
    billed_lines: list[BilledLine]
    charged_one_time: set[int]  # one-time components already charged
    pending: list[PendingUsage]
    rated_usage: dict[tuple[int, dt.date], Decimal] = field(default_factory=dict)  # (type, day) -> units
    currency_of_bill: str = ""  # the bill unit's currency
    _period_of: dict[dt.date, Period] = field(default_factory=dict, repr=False)
    # Looked up for every usage record and period: the plan's usage components by usage type, and the
    # usage prices (no frequency) of each component.
    components_by_id: dict[int, PlanComponent] = field(init=False, repr=False)
    usage_components: dict[int, PlanComponent] = field(init=False, repr=False)
    usage_prices: dict[int, list[Price]] = field(init=False, repr=False)
    months: int = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.components_by_id = {c.id: c for c in self.components}
        self.usage_components = {
            c.usage_type_id: c for c in self.components if c.kind == PlanComponent.Kind.USAGE
        }
        self.usage_prices = {
            c.id: [p for p in self.prices.get(c.id, []) if p.frequency_id is None]
            for c in self.usage_components.values()
        }
        self.months = self.subscription.frequency.months

    def pending_before(self, day: dt.date) -> int:
        """How many of the pending records (in day order) are dated before ``day``: they come first."""
        return bisect.bisect_left(self.pending, day, key=_event_date)

    def period_of(self, day: dt.date) -> Period:
        # Asked for every usage record: remember the answer per day (periods are walked from the start).
        period = self._period_of.get(day)
        if period is None:
            period = _period_containing(day, self.subscription.start_date, self.cycle_day, self.months)
            self._period_of[day] = period
        return period


def _event_date(record: PendingUsage) -> dt.date:
    return record.event_date


@lru_cache(maxsize=65536)
def _period_containing(day: dt.date, start_date: dt.date, cycle_day: int, months: int) -> Period:
    """``period_containing``, remembered across subscriptions (a run's subscriptions share few start dates
    and cycle days, and periods are walked from the start)."""
    return period_containing(day, start_date, cycle_day, months)


def _jurisdiction_for(
    subscription: Subscription, profile: BillingProfile | None, by_country: dict[str, list[TaxJurisdiction]]
) -> TaxJurisdiction | None:
    if subscription.tax_jurisdiction_id:
        return subscription.tax_jurisdiction
    if profile is None or not profile.country:
        return None
    candidates = [j for j in by_country.get(profile.country, []) if j.region in (profile.region, "")]
    candidates.sort(key=lambda j: j.region == "")  # the regional one first
    return candidates[0] if candidates else None


def _latest_segments(ids: list[int]) -> dict[int, BillSegment]:
    newest = BillSegment.objects.filter(subscription=OuterRef("subscription")).order_by("-period_start")
    return {
        s.subscription_id: s
        for s in BillSegment.objects.filter(subscription_id__in=ids, pk=Subquery(newest.values("pk")[:1]))
    }


def _since(starts: dict[int, dt.date], subscription: str, day: str) -> Q:
    """Rows of each subscription from its own date on: one OR term per distinct date (usually one)."""
    by_start: dict[dt.date, list[int]] = defaultdict(list)
    for sub_id, start in starts.items():
        by_start[start].append(sub_id)
    condition = Q()
    for start, sub_ids in by_start.items():
        condition |= Q(**{f"{subscription}__in": sub_ids, f"{day}__gte": start})
    return condition


def _lines_since(starts: dict[int, dt.date], kinds) -> dict[int, list[BilledLine]]:
    """Stored lines of these kinds of each subscription whose days start on or after its given date."""
    result: dict[int, list[BilledLine]] = defaultdict(list)
    if not starts:
        return result
    condition = _since(starts, "segment__subscription_id", "period_start")
    rows = (
        CalculationLine.objects.filter(condition, kind__in=kinds, segment__status__in=COUNTED_STATUSES)
        .values_list(
            "segment__subscription_id", "component_id", "kind", "period_start", "period_end", "amount"
        )
        .order_by()
    )
    for sub_id, *line in rows:
        result[sub_id].append(BilledLine(*line))
    return result


def _rated_usage_since(starts: dict[int, dt.date]) -> dict[int, dict[tuple[int, dt.date], Decimal]]:
    result: dict[int, dict[tuple[int, dt.date], Decimal]] = defaultdict(dict)
    if not starts:
        return result
    condition = _since(starts, "subscription_id", "event_date")
    rows = (
        UsageRecord.objects.filter(condition, status=UsageRecord.Status.ACCEPTED, rating__isnull=False)
        .values("subscription_id", "usage_type_id", "event_date")
        .annotate(q=Sum("quantity"))
        .values_list("subscription_id", "usage_type_id", "event_date", "q")
        .order_by()
    )
    for sub_id, usage_type_id, day, quantity in rows:
        result[sub_id][(usage_type_id, day)] = quantity
    return result


def rating_contexts(
    *, subscription_ids: list[int], usage_before: dt.date, prepaid: bool = False
) -> list[RatingContext]:
    """The rating contexts of these subscriptions, in processing-sequence order, read in a fixed number of
    queries. ``usage_before``: usage records dated before it are read (the rest cannot be rated yet).

    ``prepaid``: the periods a new segment rates usage of are the current ones (a prepaid run debits usage
    as it comes), so the history of every period with pending usage is read, not only of late periods.
    """
    subscriptions = list(
        Subscription.objects.filter(pk__in=subscription_ids)
        .select_related("price_plan", "frequency", "tax_jurisdiction")
        .order_by("processing_sequence", "id")
    )
    if not subscriptions:
        return []
    units = bill_units_of(account_ids={s.account_id for s in subscriptions})
    profiles = {p.account_id: p for p in BillingProfile.objects.filter(account_id__in=set(units.values()))}
    plan_ids = {s.price_plan_id for s in subscriptions}
    components: dict[int, list[PlanComponent]] = defaultdict(list)
    for component in (
        PlanComponent.objects.filter(plan_id__in=plan_ids)
        .select_related("usage_type", "tax_category")
        .order_by("position", "id")
    ):
        components[component.plan_id].append(component)
    prices: dict[int, list[Price]] = defaultdict(list)
    for price in (
        Price.objects.filter(component__plan_id__in=plan_ids).prefetch_related("tiers").order_by("valid_from")
    ):
        prices[price.component_id].append(price)
    ids = [s.pk for s in subscriptions]
    account_ids = {s.account_id for s in subscriptions}
    discounts = list(
        Discount.objects.filter(active=True)
        .filter(Q(price_plan_id__in=plan_ids) | Q(subscription_id__in=ids) | Q(account_id__in=account_ids))
        .order_by("code")
    )
    countries = {p.country for p in profiles.values() if p.country}
    by_country: dict[str, list[TaxJurisdiction]] = defaultdict(list)
    if countries:
        for jurisdiction in TaxJurisdiction.objects.filter(country__in=countries):
            by_country[jurisdiction.country].append(jurisdiction)
    jurisdictions = {
        s.pk: _jurisdiction_for(s, profiles.get(units.get(s.account_id)), by_country) for s in subscriptions
    }
    tax_rates: dict[int, dict[int, list[TaxRate]]] = defaultdict(lambda: defaultdict(list))
    wanted = {j.pk for j in jurisdictions.values() if j is not None}
    if wanted:
        for rate in TaxRate.objects.filter(jurisdiction_id__in=wanted).order_by("valid_from"):
            tax_rates[rate.jurisdiction_id][rate.category_id].append(rate)
    latest = _latest_segments(ids)
    charged_one_time: dict[int, set[int]] = defaultdict(set)
    for sub_id, component_id in (
        CalculationLine.objects.filter(
            segment__subscription_id__in=ids,
            kind=CalculationLine.Kind.ONE_TIME,
            segment__status__in=COUNTED_STATUSES,
        )
        .values_list("segment__subscription_id", "component_id")
        .distinct()
        .order_by()
    ):
        charged_one_time[sub_id].add(component_id)
    pending: dict[int, list[PendingUsage]] = defaultdict(list)
    for record_id, sub_id, usage_type_id, day, quantity in (
        UsageToRate.objects.filter(subscription_id__in=ids, event_date__lt=usage_before)
        .values_list("usage_record_id", "subscription_id", "usage_type_id", "event_date", "quantity")
        .order_by("event_date", "usage_record_id")
    ):
        pending[sub_id].append(PendingUsage(record_id, usage_type_id, day, quantity))

    contexts = []
    for sub in subscriptions:
        profile = profiles.get(units.get(sub.account_id))
        jurisdiction = jurisdictions[sub.pk]
        plan_components = components.get(sub.price_plan_id, [])
        contexts.append(
            RatingContext(
                subscription=sub,
                cycle_day=profile.bill_cycle_day if profile else 1,
                components=plan_components,
                prices={c.pk: prices.get(c.pk, []) for c in plan_components},
                discounts=[
                    d
                    for d in discounts
                    if d.price_plan_id == sub.price_plan_id
                    or d.subscription_id == sub.pk
                    or d.account_id == sub.account_id
                ],
                jurisdiction=jurisdiction,
                tax_rates=tax_rates[jurisdiction.pk] if jurisdiction is not None else {},
                latest=latest.get(sub.pk),
                billed_lines=[],
                charged_one_time=charged_one_time.get(sub.pk, set()),
                pending=pending.get(sub.pk, []),
                currency_of_bill=profile.currency if profile else "",
            )
        )
    _read_history(contexts, prepaid=prepaid)
    return contexts


def _read_history(contexts: list[RatingContext], *, prepaid: bool) -> None:
    """The billed lines (and rated usage) the next segments can depend on; see the module docstring."""
    corrections: dict[int, dt.date] = {}
    usage_history: dict[int, dt.date] = {}
    for ctx in contexts:
        sub = ctx.subscription
        if ctx.latest is None:
            continue
        if sub.end_date is not None and not prepaid:
            corrections[sub.pk] = ctx.period_of(sub.end_date).start
        if ctx.pending:
            first = ctx.period_of(ctx.pending[0].event_date)
            # Normal: the usage of a period is rated on the next period's segment, so a period before the
            # latest segment's may have rated usage. Prepaid: any period a segment already reached has.
            if prepaid:
                touched = ctx.latest.period_end >= first.start
            else:
                touched = first.start < ctx.latest.period_start
            if touched:
                usage_history[sub.pk] = first.start
    recurring = _lines_since(corrections, RECURRING_KINDS)
    usage = _lines_since(usage_history, USAGE_KINDS)
    rated = _rated_usage_since(usage_history)
    for ctx in contexts:
        pk = ctx.subscription.pk
        ctx.billed_lines = [*recurring.get(pk, []), *usage.get(pk, [])]
        ctx.rated_usage = rated.get(pk, {})
