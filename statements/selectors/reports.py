"""Reports for billing admins (Django admin, statements.admin.reports): what billers billed, by month, biller
and charge type; and where a biller's balance and the ledger disagree.

Amounts are never added across currencies: every group carries its currency. The database does the
grouping (GROUP BY with TruncMonth), in a fixed number of queries whatever the number of statements.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal

from django.db.models import Count, Q, QuerySet, Sum
from django.db.models.functions import TruncMonth

from accounts.models import Account, Biller
from statements.models import Statement, StatementLine

from .reconciliation import reconciliation_differences

# Columns of the billed-amounts report, in the order a bill shows them.
LINE_TYPES: tuple[str, ...] = tuple(StatementLine.Type.values)


@dataclass(frozen=True, kw_only=True)
class BilledFigures:
    """What a group of statements billed in one currency: counts, header sums and line sums by type."""

    currency: str
    statements: int
    usage_detail_purged: int
    new_charges: Decimal
    taxes: Decimal
    line_amounts: dict[str, Decimal] = field(default_factory=dict)

    @property
    def billed(self) -> Decimal:
        """What reached the ledger for these statements: new charges plus taxes."""
        return self.new_charges + self.taxes

    def line_amount(self, line_type: str) -> Decimal:
        return self.line_amounts.get(line_type, Decimal(0))


@dataclass(frozen=True, kw_only=True)
class BilledRow(BilledFigures):
    """One month of one biller in one currency."""

    month: dt.date
    biller_id: int
    biller_code: str
    biller_name: str


@dataclass(frozen=True, kw_only=True)
class CurrencyTotal(BilledFigures):
    """All months and billers of one currency (currencies are never added together)."""


@dataclass(frozen=True)
class BilledAmounts:
    rows: list[BilledRow]
    totals: list[CurrencyTotal]
    line_types: tuple[str, ...] = LINE_TYPES


def _in_range(prefix: str, date_from: dt.date | None, date_to: dt.date | None, biller_id: int | None) -> Q:
    """The report's filters, on statements (prefix "") or on their lines (prefix "statement__")."""
    condition = Q()
    if date_from is not None:
        condition &= Q(**{f"{prefix}statement_date__gte": date_from})
    if date_to is not None:
        condition &= Q(**{f"{prefix}statement_date__lte": date_to})
    if biller_id is not None:
        condition &= Q(**{f"{prefix}biller_id": biller_id})
    return condition


def _header_sums(statements: QuerySet[Statement], *group: str) -> QuerySet:
    return (
        statements.values(*group)
        .annotate(
            n=Count("id"),
            purged=Count("id", filter=Q(usage_detail_purged_at__isnull=False)),
            new_charges_sum=Sum("new_charges"),
            taxes_sum=Sum("taxes"),
        )
        .order_by(*group)
    )


def billed_amounts(
    *, date_from: dt.date | None = None, date_to: dt.date | None = None, biller_id: int | None = None
) -> BilledAmounts:
    """Statements by month of their statement date, biller and currency: the sums of their lines per line
    type and of their header amounts; and the same per currency over the whole range. Four queries.

    Statements whose usage lines the retention job removed keep their totals (``new_charges``) but no
    longer have usage lines: ``usage_detail_purged`` counts them so the reader knows the usage column is
    short for those months.
    """
    statements = Statement.objects.filter(_in_range("", date_from, date_to, biller_id))
    lines = StatementLine.objects.filter(_in_range("statement__", date_from, date_to, biller_id))

    by_group: dict[tuple, dict[str, Decimal]] = defaultdict(dict)
    for row in (
        lines.annotate(month=TruncMonth("statement__statement_date"))
        .values("month", "statement__biller_id", "statement__currency", "line_type")
        .annotate(total=Sum("amount"))
        .order_by()
    ):
        key = (row["month"], row["statement__biller_id"], row["statement__currency"])
        by_group[key][row["line_type"]] = row["total"]
    by_currency: dict[str, dict[str, Decimal]] = defaultdict(dict)
    for row in lines.values("statement__currency", "line_type").annotate(total=Sum("amount")).order_by():
        by_currency[row["statement__currency"]][row["line_type"]] = row["total"]

    rows = [
        BilledRow(
            month=row["month"],
            biller_id=row["biller_id"],
            biller_code=row["biller__code"],
            biller_name=row["biller__name"],
            currency=row["currency"],
            statements=row["n"],
            usage_detail_purged=row["purged"],
            new_charges=row["new_charges_sum"],
            taxes=row["taxes_sum"],
            line_amounts=by_group.get((row["month"], row["biller_id"], row["currency"]), {}),
        )
        for row in _header_sums(
            statements.annotate(month=TruncMonth("statement_date")),
            "month",
            "biller__name",
            "biller_id",
            "biller__code",
            "currency",
        )
    ]
    totals = [
        CurrencyTotal(
            currency=row["currency"],
            statements=row["n"],
            usage_detail_purged=row["purged"],
            new_charges=row["new_charges_sum"],
            taxes=row["taxes_sum"],
            line_amounts=by_currency.get(row["currency"], {}),
        )
        for row in _header_sums(statements, "currency")
    ]
    return BilledAmounts(rows=rows, totals=totals)


@dataclass(frozen=True)
class ReconciliationRow:
    account_id: int
    account_number: str
    account_name: str
    biller_id: int
    biller_code: str
    biller_name: str
    currency: str
    as_of: dt.datetime
    biller_amount: Decimal
    ledger_amount: Decimal

    @property
    def difference(self) -> Decimal:
        """What the biller says minus what the ledger says."""
        return self.biller_amount - self.ledger_amount


def reconciliation_report(
    *, biller_id: int | None = None, limit: int | None = None
) -> list[ReconciliationRow]:
    """Every (account, biller) whose biller's latest balance differs from the ledger, with the account's
    number and name (two more queries, whatever the number of rows)."""
    differences = reconciliation_differences(biller_id=biller_id, limit=limit)
    if not differences:
        return []
    accounts = Account.objects.only("number", "name").in_bulk({d.account_id for d in differences})
    billers = Biller.objects.only("code", "name").in_bulk({d.biller_id for d in differences})
    return [
        ReconciliationRow(
            account_id=d.account_id,
            account_number=accounts[d.account_id].number,
            account_name=accounts[d.account_id].name,
            biller_id=d.biller_id,
            biller_code=billers[d.biller_id].code,
            biller_name=billers[d.biller_id].name,
            currency=d.currency,
            as_of=d.as_of,
            biller_amount=d.biller_amount,
            ledger_amount=d.ledger_amount,
        )
        for d in differences
    ]
