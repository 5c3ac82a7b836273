"""Aggregates behind the account page's billing and usage charts.

Each selector is one grouped query (GROUP BY month with TruncMonth, or by line type) whatever the length of
the account's history; the months without data are filled in here, in Python, so that a chart's axis has
no holes.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from django.db.models import Count, F, Q, Sum
from django.db.models.functions import TruncMonth
from django.utils import timezone

from statements.models import Statement, StatementLine, UsageSummary

BILLING_MONTHS = 24
CHARGE_TYPE_MONTHS = 12
USAGE_MONTHS = 24


def month_window(*, months: int, today: dt.date | None = None) -> list[dt.date]:
    """The first day of each of the last ``months`` months, oldest first, the current month last."""
    if months < 1:
        raise ValueError("months must be at least 1.")
    today = today or timezone.localdate()
    index = today.year * 12 + today.month - 1
    return [dt.date((i // 12), (i % 12) + 1, 1) for i in range(index - months + 1, index + 1)]


def _as_date(value: dt.date | dt.datetime) -> dt.date:
    # TruncMonth of a DateField is a date; be tolerant of a datetime from another backend.
    return value.date() if isinstance(value, dt.datetime) else value


@dataclass(frozen=True)
class BillerMonthlySeries:
    biller_id: int
    biller_name: str
    values: list[Decimal]  # one per month of the window; 0 when nothing was billed

    @property
    def total(self) -> Decimal:
        return sum(self.values, Decimal(0))


@dataclass(frozen=True)
class BillingByMonth:
    months: list[dt.date]
    series: list[BillerMonthlySeries]

    @property
    def month_totals(self) -> list[Decimal]:
        return [sum((s.values[i] for s in self.series), Decimal(0)) for i in range(len(self.months))]

    @property
    def total(self) -> Decimal:
        return sum(self.month_totals, Decimal(0))


def billing_by_month(
    *,
    account_id: int,
    months: int = BILLING_MONTHS,
    today: dt.date | None = None,
    currency: str | None = None,
) -> BillingByMonth:
    """What each biller billed the account per month: the statements' new charges plus taxes (the period's
    billing; total due would count unpaid balances again every month), by statement date. One query."""
    window = month_window(months=months, today=today)
    statements = Statement.objects.filter(
        account_id=account_id,
        statement_date__gte=window[0],
        statement_date__lt=_next_month(window[-1]),
    )
    if currency:
        statements = statements.filter(currency=currency)
    rows = (
        statements.annotate(month=TruncMonth("statement_date"))
        .values("month", "biller_id", "biller__name")
        .annotate(billed=Sum(F("new_charges") + F("taxes")))
        .order_by()
    )
    position = {month: i for i, month in enumerate(window)}
    series: dict[int, tuple[str, list[Decimal]]] = {}
    for row in rows:
        i = position[_as_date(row["month"])]
        _name, values = series.setdefault(row["biller_id"], (row["biller__name"], [Decimal(0)] * len(window)))
        values[i] += row["billed"]
    return BillingByMonth(
        months=window,
        series=[
            BillerMonthlySeries(biller_id=biller_id, biller_name=name, values=values)
            for biller_id, (name, values) in sorted(series.items(), key=lambda item: (item[1][0], item[0]))
        ],
    )


def _next_month(month: dt.date) -> dt.date:
    return dt.date(month.year + month.month // 12, month.month % 12 + 1, 1)


@dataclass(frozen=True)
class ChargeTypeTotal:
    line_type: str
    label: str
    amount: Decimal
    lines: int


@dataclass(frozen=True)
class BillingByChargeType:
    start: dt.date
    end: dt.date  # inclusive: today
    totals: list[ChargeTypeTotal]  # largest amount first
    purged_statements: int  # statements in the window whose usage lines retention removed

    @property
    def total(self) -> Decimal:
        return sum((t.amount for t in self.totals), Decimal(0))

    @property
    def positive(self) -> list[ChargeTypeTotal]:
        """The types a pie can draw (a slice cannot be negative: discounts and credits are listed only)."""
        return [t for t in self.totals if t.amount > 0]


def billing_by_charge_type(
    *,
    account_id: int,
    months: int = CHARGE_TYPE_MONTHS,
    today: dt.date | None = None,
    currency: str | None = None,
) -> BillingByChargeType:
    """The sum of line amounts (before each line's tax) by line type over the statements dated in the last
    ``months`` months (the current month included). Two queries: the lines grouped by type, and how many of
    those statements lost their usage lines to retention (their usage then is missing from the sums)."""
    today = today or timezone.localdate()
    window = month_window(months=months, today=today)
    statements = Statement.objects.filter(
        account_id=account_id, statement_date__gte=window[0], statement_date__lte=today
    )
    if currency:
        statements = statements.filter(currency=currency)
    labels = dict(StatementLine.Type.choices)
    rows = (
        StatementLine.objects.filter(statement__in=statements)
        .values("line_type")
        .annotate(amount=Sum("amount"), lines=Count("id"))
        .order_by()
    )
    totals = sorted(
        (
            ChargeTypeTotal(
                line_type=row["line_type"],
                label=labels.get(row["line_type"], row["line_type"]),
                amount=row["amount"],
                lines=row["lines"],
            )
            for row in rows
        ),
        key=lambda t: (-t.amount, t.line_type),
    )
    purged = statements.aggregate(n=Count("id", filter=Q(usage_detail_purged_at__isnull=False)))["n"]
    return BillingByChargeType(start=window[0], end=today, totals=totals, purged_statements=purged)


@dataclass(frozen=True)
class UsageSeries:
    usage_type: str
    unit: str
    values: list[Decimal | None]  # None: no statement of that month reported this usage

    @property
    def total(self) -> Decimal:
        return sum((v for v in self.values if v is not None), Decimal(0))

    @property
    def key(self) -> str:
        return f"{self.usage_type}-{self.unit}"


@dataclass(frozen=True)
class UsageByMonth:
    months: list[dt.date]
    series: list[UsageSeries]


def usage_by_month(
    *, account_id: int, months: int = USAGE_MONTHS, today: dt.date | None = None
) -> UsageByMonth:
    """Usage per (usage type, unit) per month of statement date, summed over services and billers. One
    query. Different units are different series: minutes and megabytes do not add up."""
    window = month_window(months=months, today=today)
    summaries = UsageSummary.objects.filter(
        statement__account_id=account_id,
        statement__statement_date__gte=window[0],
        statement__statement_date__lt=_next_month(window[-1]),
    )
    rows = (
        summaries.annotate(month=TruncMonth("statement__statement_date"))
        .values("month", "usage_type", "unit")
        .annotate(quantity=Sum("quantity"))
        .order_by()
    )
    position = {month: i for i, month in enumerate(window)}
    series: dict[tuple[str, str], list[Decimal | None]] = {}
    for row in rows:
        i = position[_as_date(row["month"])]
        values = series.setdefault((row["usage_type"], row["unit"]), [None] * len(window))
        values[i] = (values[i] or Decimal(0)) + row["quantity"]
    return UsageByMonth(
        months=window,
        series=[
            UsageSeries(usage_type=usage_type, unit=unit, values=values)
            for (usage_type, unit), values in sorted(series.items())
        ],
    )
