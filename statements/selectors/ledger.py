"""Ledger reads."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from django.db.models import Count, Max, Sum

from statements.models import AccountBalance, BalanceType, FinancialTransaction


@dataclass(frozen=True)
class BalanceMismatch:
    account_id: int
    balance_type: str
    currency: str
    cached_amount: Decimal | None
    ledger_amount: Decimal
    cached_count: int | None
    ledger_count: int


def account_balances(*, account_id: int) -> list[AccountBalance]:
    return list(AccountBalance.objects.filter(account_id=account_id).order_by("balance_type"))


def account_receivable(*, account_id: int) -> AccountBalance | None:
    return AccountBalance.objects.filter(account_id=account_id, balance_type=BalanceType.RECEIVABLE).first()


def ledger_sum(*, account_id: int, balance_type: str = BalanceType.RECEIVABLE) -> Decimal:
    total = FinancialTransaction.objects.filter(account_id=account_id, balance_type=balance_type).aggregate(
        total=Sum("amount")
    )["total"]
    return total or Decimal(0)


def account_transactions(*, account_id: int, limit: int = 50):
    return FinancialTransaction.objects.filter(account_id=account_id).select_related("biller")[:limit]


def ledger_mismatches(*, account_ids: list[int] | None = None) -> list[BalanceMismatch]:
    """Every (account, balance type) whose cached balance differs from the sum of its ledger rows.

    Two grouped queries, whatever the number of accounts.
    """
    rows = FinancialTransaction.objects.all()
    cached = AccountBalance.objects.all()
    if account_ids is not None:
        rows = rows.filter(account_id__in=account_ids)
        cached = cached.filter(account_id__in=account_ids)
    sums = {
        (r["account_id"], r["balance_type"]): r
        for r in rows.values("account_id", "balance_type").annotate(
            total=Sum("amount"), n=Count("id"), cur=Max("currency")
        )
    }
    cache = {(b.account_id, b.balance_type): b for b in cached}
    mismatches = []
    for key in sorted(set(sums) | set(cache)):
        ledger = sums.get(key)
        balance = cache.get(key)
        ledger_amount = ledger["total"] if ledger else Decimal(0)
        ledger_count = ledger["n"] if ledger else 0
        if (
            balance is not None
            and balance.amount == ledger_amount
            and balance.transaction_count == ledger_count
        ):
            continue
        mismatches.append(
            BalanceMismatch(
                account_id=key[0],
                balance_type=key[1],
                currency=ledger["cur"] if ledger else balance.currency,
                cached_amount=balance.amount if balance else None,
                ledger_amount=ledger_amount,
                cached_count=balance.transaction_count if balance else None,
                ledger_count=ledger_count,
            )
        )
    return mismatches
