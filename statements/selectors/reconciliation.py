"""Reconciliation with billers: each biller's own reported balance (its latest snapshot) against the ledger.

The ledger's side is the sum of the rows that biller is the source of (its statements' charges, the payments
and adjustments it reported, the opening balance brought forward), up to the snapshot's date. A difference is
shown on the account page and listed in the admin report; nothing is ever overwritten to make them agree.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from django.db.models import OuterRef, Q, Subquery, Sum
from django.utils import timezone

from statements.models import BillerBalanceSnapshot, FinancialTransaction


@dataclass(frozen=True)
class BillerBalanceComparison:
    account_id: int
    biller_id: int
    biller_name: str
    currency: str
    as_of: dt.datetime
    biller_amount: Decimal
    ledger_amount: Decimal
    received_at: dt.datetime

    @property
    def difference(self) -> Decimal:
        """What the biller says minus what the ledger says."""
        return self.biller_amount - self.ledger_amount

    @property
    def is_reconciled(self) -> bool:
        return self.difference == 0


def _latest_snapshots(account_ids: Iterable[int] | None = None, biller_id: int | None = None):
    """The newest snapshot per (account, biller): one query with DISTINCT ON on PostgreSQL, a subquery
    elsewhere."""
    snapshots = BillerBalanceSnapshot.objects.select_related("biller")
    if account_ids is not None:
        snapshots = snapshots.filter(account_id__in=list(account_ids))
    if biller_id is not None:
        snapshots = snapshots.filter(biller_id=biller_id)
    newest = BillerBalanceSnapshot.objects.filter(
        account_id=OuterRef("account_id"), biller_id=OuterRef("biller_id")
    ).order_by("-as_of", "-id")
    return snapshots.filter(pk=Subquery(newest.values("pk")[:1])).order_by("account_id", "biller__name")


def _compare(snapshots) -> list[BillerBalanceComparison]:
    snapshots = list(snapshots)
    if not snapshots:
        return []
    # One grouped query for all ledger sums: rows of each (account, biller) up to each snapshot's date.
    condition = Q()
    for snap in snapshots:
        local_day = timezone.localdate(snap.as_of)
        condition |= Q(account_id=snap.account_id, biller_id=snap.biller_id, effective_date__lte=local_day)
    sums = {
        (row["account_id"], row["biller_id"]): row["total"]
        for row in FinancialTransaction.objects.filter(condition, balance_type="receivable")
        .values("account_id", "biller_id")
        .annotate(total=Sum("amount"))
    }
    return [
        BillerBalanceComparison(
            account_id=snap.account_id,
            biller_id=snap.biller_id,
            biller_name=snap.biller.name,
            currency=snap.currency,
            as_of=snap.as_of,
            biller_amount=snap.amount,
            ledger_amount=sums.get((snap.account_id, snap.biller_id)) or Decimal(0),
            received_at=snap.received_at,
        )
        for snap in snapshots
    ]


def biller_balance_comparisons(*, account_id: int) -> list[BillerBalanceComparison]:
    """For the account page: each biller's latest balance of this account beside the ledger's. Two queries."""
    return _compare(_latest_snapshots(account_ids=[account_id]))


def reconciliation_differences(
    *, biller_id: int | None = None, limit: int | None = None
) -> list[BillerBalanceComparison]:
    """For the admin report: every (account, biller) whose latest snapshot differs from the ledger.

    Works in chunks of accounts so that memory stays flat on a large base.
    """
    differences: list[BillerBalanceComparison] = []
    latest = _latest_snapshots(biller_id=biller_id)
    chunk: list[BillerBalanceSnapshot] = []
    for snap in latest.iterator(chunk_size=2000):
        chunk.append(snap)
        if len(chunk) == 2000:
            differences.extend(c for c in _compare(chunk) if not c.is_reconciled)
            chunk = []
            if limit is not None and len(differences) >= limit:
                return differences[:limit]
    differences.extend(c for c in _compare(chunk) if not c.is_reconciled)
    return differences[:limit] if limit is not None else differences
