"""Reads of statements for the CSR pages: an account's statements, one statement with its lines and usage,
and each biller's balance beside the ledger's.

Every function here runs a fixed number of queries, whatever the account's history: the account page calls
them on every view.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.core.paginator import Page, Paginator
from django.db.models import Count, Max, Prefetch, QuerySet, Sum, Window

from statements.models import (
    AccountBalance,
    BalanceType,
    FinancialTransaction,
    Statement,
    StatementLine,
    UsageSummary,
)

from .ledger import account_receivable
from .reconciliation import biller_balance_comparisons


def account_statements(*, account_id: int) -> QuerySet[Statement]:
    """An account's statements, newest first, with their biller (one query per page once sliced)."""
    return (
        Statement.objects.filter(account_id=account_id)
        .select_related("biller")
        .order_by("-statement_date", "-id")
    )


def account_statements_page(*, account_id: int, number: Any, per_page: int) -> Page:
    """One page of the account's statements (newest first) with their count, in one query: the count comes
    with the page's rows (``COUNT(*) OVER ()``). A page past the end (no rows) falls back to the paginator:
    the count, then the last page."""
    statements = account_statements(account_id=account_id)
    paginator = Paginator(statements, per_page)
    try:
        wanted = int(number)
    except (TypeError, ValueError):
        wanted = 1
    if wanted < 1:  # as Paginator.get_page: the last page
        return paginator.get_page(wanted)
    start = (wanted - 1) * per_page
    rows = list(statements.annotate(total_count=Window(Count("id")))[start : start + per_page])
    if not rows:
        return paginator.get_page(wanted)
    paginator.count = rows[0].total_count  # a cached_property: set, it is never queried
    return Page(rows, wanted, paginator)


def statement_for_account(*, account_number: str, statement_id: int) -> Statement:
    """One statement of one account with its biller, account, lines (by position) and usage: three queries.

    Raises Statement.DoesNotExist when the statement is not that account's, so that a statement id cannot be
    read under another account's URL.
    """
    return (
        Statement.objects.select_related("biller", "account", "account__billing_profile")
        .prefetch_related(
            Prefetch("lines", queryset=StatementLine.objects.order_by("position", "id")),
            Prefetch(
                "usage_summaries",
                queryset=UsageSummary.objects.order_by("service_identifier", "usage_type", "id"),
            ),
        )
        .get(pk=statement_id, account__number=account_number)
    )


# Lines grouped for display -----------------------------------------------------------------------------

# The order of line types inside a service: charges first, then credits, then what the bill adds on top.
LINE_TYPE_ORDER = [
    StatementLine.Type.RECURRING,
    StatementLine.Type.USAGE,
    StatementLine.Type.ONE_TIME,
    StatementLine.Type.OTHER,
    StatementLine.Type.DISCOUNT,
    StatementLine.Type.ADJUSTMENT,
    StatementLine.Type.TAX,
]


def _quantity_total(lines: list[StatementLine]) -> tuple[Decimal | None, str]:
    """The sum of the lines' quantities when they share one unit (minutes and megabytes do not add up)."""
    units = {line.unit for line in lines if line.quantity is not None}
    if len(units) != 1 or any(line.quantity is None for line in lines):
        return None, ""
    return sum((line.quantity for line in lines), Decimal(0)), units.pop()


@dataclass
class LineTypeGroup:
    line_type: str
    label: str
    lines: list[StatementLine]
    amount: Decimal
    tax: Decimal
    quantity: Decimal | None
    unit: str


@dataclass
class ServiceGroup:
    service_identifier: str  # "" for lines that belong to the account as a whole
    types: list[LineTypeGroup] = field(default_factory=list)
    amount: Decimal = Decimal(0)
    tax: Decimal = Decimal(0)

    @property
    def line_count(self) -> int:
        return sum(len(group.lines) for group in self.types)


def statement_line_groups(*, lines: Iterable[StatementLine]) -> list[ServiceGroup]:
    """Lines by service identifier (in the order the bill first lists them), then by line type, with
    subtotals. Works on lines already loaded (the prefetch of ``statement_for_account``): no query."""
    by_service: dict[str, dict[str, list[StatementLine]]] = {}
    for line in lines:
        by_service.setdefault(line.service_identifier, {}).setdefault(line.line_type, []).append(line)
    labels = dict(StatementLine.Type.choices)
    order = {line_type: i for i, line_type in enumerate(LINE_TYPE_ORDER)}
    groups = []
    for service, by_type in by_service.items():
        group = ServiceGroup(service_identifier=service)
        for line_type in sorted(by_type, key=lambda t: order.get(t, len(order))):
            typed = by_type[line_type]
            quantity, unit = _quantity_total(typed)
            type_group = LineTypeGroup(
                line_type=line_type,
                label=labels.get(line_type, line_type),
                lines=typed,
                amount=sum((line.amount for line in typed), Decimal(0)),
                tax=sum((line.tax for line in typed), Decimal(0)),
                quantity=quantity,
                unit=unit,
            )
            group.types.append(type_group)
            group.amount += type_group.amount
            group.tax += type_group.tax
        groups.append(group)
    # Account-level lines (no service identifier) come after the services.
    groups.sort(key=lambda g: g.service_identifier == "")
    return groups


# Biller balances beside the ledger -----------------------------------------------------------------------


@dataclass(frozen=True)
class BillerBalanceRow:
    """One biller's line in the account's balances: its latest reported balance (if any) and the ledger's."""

    biller_id: int
    biller_name: str
    currency: str
    ledger_amount: Decimal  # to the snapshot's date when there is one, else all of the biller's rows
    biller_amount: Decimal | None = None
    as_of: dt.datetime | None = None
    received_at: dt.datetime | None = None

    @property
    def has_snapshot(self) -> bool:
        return self.biller_amount is not None

    @property
    def difference(self) -> Decimal | None:
        """What the biller says minus what the ledger says."""
        return None if self.biller_amount is None else self.biller_amount - self.ledger_amount

    @property
    def is_reconciled(self) -> bool:
        return self.difference == 0


@dataclass(frozen=True)
class AccountBillerBalances:
    rows: list[BillerBalanceRow]
    total: Decimal  # the account's receivable balance (the ledger, all sources)
    currency: str
    own_amount: Decimal  # rows entered in this product (no biller): payments and adjustments by CSRs

    @property
    def differences(self) -> int:
        return sum(1 for row in self.rows if row.has_snapshot and not row.is_reconciled)


def biller_balances(
    *, account_id: int, currency: str = "", balances: list[AccountBalance] | None = None
) -> AccountBillerBalances:
    """Per biller: its latest reported balance beside the ledger's, and the account's ledger total. Four
    queries: the comparisons (two), the ledger grouped by biller, the cached receivable balance (none when
    the caller has the account's cached ``balances`` already, e.g. from the balance tiles).

    Billers with ledger rows but no snapshot are listed with their ledger amount and no reported balance.
    """
    comparisons = {c.biller_id: c for c in biller_balance_comparisons(account_id=account_id)}
    sums = list(
        FinancialTransaction.objects.filter(account_id=account_id, balance_type=BalanceType.RECEIVABLE)
        .values("biller_id", "biller__name")
        .annotate(total=Sum("amount"), currency=Max("currency"))
        .order_by()
    )
    rows: dict[int, BillerBalanceRow] = {}
    own = Decimal(0)
    for row in sums:
        if row["biller_id"] is None:
            own += row["total"]
        elif row["biller_id"] not in comparisons:
            rows[row["biller_id"]] = BillerBalanceRow(
                biller_id=row["biller_id"],
                biller_name=row["biller__name"],
                currency=row["currency"],
                ledger_amount=row["total"],
            )
    for biller_id, comparison in comparisons.items():
        rows[biller_id] = BillerBalanceRow(
            biller_id=biller_id,
            biller_name=comparison.biller_name,
            currency=comparison.currency,
            ledger_amount=comparison.ledger_amount,
            biller_amount=comparison.biller_amount,
            as_of=comparison.as_of,
            received_at=comparison.received_at,
        )
    if balances is None:
        receivable = account_receivable(account_id=account_id)
    else:
        receivable = next((b for b in balances if b.balance_type == BalanceType.RECEIVABLE), None)
    total = receivable.amount if receivable else Decimal(0)
    currency = (receivable.currency if receivable else "") or currency
    if not currency and rows:
        currency = next(iter(rows.values())).currency
    return AccountBillerBalances(
        rows=sorted(rows.values(), key=lambda r: (r.biller_name.lower(), r.biller_id)),
        total=total,
        currency=currency,
        own_amount=own,
    )
