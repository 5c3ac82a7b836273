"""Reads of the payments app for the CSR pages: an account's payments, adjustments, refunds and write-offs as
one list (newest first, with their status), what it owes or has in credit, its payment methods, the
statements a payment or adjustment may name, and the supervisors' queue of adjustments waiting for approval.

Each read is a fixed number of queries, whatever the number of rows (tests/payments/test_views.py).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db.models import Q, QuerySet
from django.utils import timezone

from accounts.models import Account
from statements.models import AccountBalance, BalanceType, Statement

from .models import Adjustment, AdjustmentReason, ExportItem, Payment, PaymentMethod, Refund, WriteOff
from .services import OPEN_STATUSES

PAYMENT, CREDIT, DEBIT, REVERSAL = "payment", "credit", "debit", "reversal"
REFUND, WRITE_OFF = "refund", "write_off"
ENTRY_TYPES = {
    PAYMENT: "Payment",
    CREDIT: "Credit adjustment",
    DEBIT: "Debit adjustment",
    REVERSAL: "Reversal",
    REFUND: "Refund",
    WRITE_OFF: "Write-off",
}


@dataclass
class Entry:
    """One row of the Payments & adjustments table.

    ``signed_amount`` is the entry's effect on what the customer owes (as in the ledger): payments, credits
    and write-offs are negative, debits, reversals and refunds positive. ``status`` is a Payment or Adjustment
    status value (refunds and write-offs are always posted).
    """

    type: str
    date: dt.date
    at: dt.datetime
    signed_amount: Decimal
    currency: str
    text: str
    status: str
    status_label: str
    entered_by: Any
    payment: Payment | None = None
    adjustment: Adjustment | None = None
    refund: Refund | None = None
    write_off: WriteOff | None = None
    export: ExportItem | None = None

    @property
    def export_label(self) -> str:
        """Where the entry stands at the account's external biller (empty: nothing to export)."""
        item = self.export
        if item is None:
            return ""
        name = item.biller.name
        return {
            ExportItem.Status.PENDING: f"Export to {name} pending",
            ExportItem.Status.DELIVERED: f"Sent to {name}, awaiting confirmation",
            ExportItem.Status.CONFIRMED: f"Confirmed by {name}",
            ExportItem.Status.REJECTED: f"Rejected by {name}: {item.rejection_reason}",
            ExportItem.Status.DEAD: f"Export to {name} failed (billing admins retry it)",
        }[item.status]

    @property
    def type_label(self) -> str:
        return ENTRY_TYPES[self.type]

    @property
    def key(self) -> str:
        obj = next(o for o in (self.payment, self.adjustment, self.refund, self.write_off) if o is not None)
        return f"{self.type}-{obj.pk}"


def receivable_balance(*, unit: Account) -> Decimal:
    """What the bill unit owes now (negative: a credit it may be refunded), from its cached receivable
    balance. One query."""
    amount = (
        AccountBalance.objects.filter(account=unit, balance_type=BalanceType.RECEIVABLE)
        .values_list("amount", flat=True)
        .first()
    )
    return amount if amount is not None else Decimal(0)


def account_entries(*, unit: Account, limit: int) -> tuple[list[Entry], bool]:
    """The bill unit's latest payments, reversals, adjustments, refunds and write-offs, newest first (by when
    they were entered), and whether there are more. Four queries (and one for the exports of those shown)."""
    payments = list(
        Payment.objects.filter(account=unit)
        .select_related("created_by", "method", "reversal__created_by")
        .order_by("-created_at", "-id")[: limit + 1]
    )
    adjustments = list(
        Adjustment.objects.filter(account=unit)
        .select_related("reason", "maker", "checker", "statement")
        .order_by("-created_at", "-id")[: limit + 1]
    )
    entries: list[Entry] = []
    for payment in payments:
        entries.append(
            Entry(
                type=PAYMENT,
                date=payment.payment_date,
                at=payment.created_at,
                signed_amount=-payment.amount,
                currency=payment.currency,
                text=payment.reference,
                status=payment.status,
                status_label=payment.get_status_display(),
                entered_by=payment.created_by,
                payment=payment,
            )
        )
        if payment.reversal is not None:
            row = payment.reversal
            entries.append(
                Entry(
                    type=REVERSAL,
                    date=row.effective_date,
                    at=row.posted_at,
                    signed_amount=row.amount,
                    currency=row.currency,
                    text=payment.reversal_reason,
                    status=Payment.Status.POSTED,
                    status_label=Payment.Status.POSTED.label,
                    entered_by=row.created_by,
                    payment=payment,
                )
            )
    for adjustment in adjustments:
        entries.append(
            Entry(
                type=CREDIT if adjustment.direction == Adjustment.Direction.CREDIT else DEBIT,
                date=timezone.localdate(adjustment.created_at),
                at=adjustment.created_at,
                signed_amount=adjustment.signed_amount,
                currency=adjustment.currency,
                text=adjustment.reason.name,
                status=adjustment.status,
                status_label=adjustment.get_status_display(),
                entered_by=adjustment.maker,
                adjustment=adjustment,
            )
        )
    refunds = list(
        Refund.objects.filter(account=unit)
        .select_related("created_by", "method")
        .order_by("-created_at", "-id")[: limit + 1]
    )
    write_offs = list(
        WriteOff.objects.filter(account=unit)
        .select_related("created_by")
        .order_by("-created_at", "-id")[: limit + 1]
    )
    posted = Payment.Status.POSTED
    for refund in refunds:
        entries.append(
            Entry(
                type=REFUND,
                date=timezone.localdate(refund.created_at),
                at=refund.created_at,
                signed_amount=refund.amount,
                currency=refund.currency,
                text=refund.reason,
                status=posted,
                status_label=posted.label,
                entered_by=refund.created_by,
                refund=refund,
            )
        )
    for write_off in write_offs:
        entries.append(
            Entry(
                type=WRITE_OFF,
                date=timezone.localdate(write_off.created_at),
                at=write_off.created_at,
                signed_amount=-write_off.amount,
                currency=write_off.currency,
                text=write_off.reason,
                status=posted,
                status_label=posted.label,
                entered_by=write_off.created_by,
                write_off=write_off,
            )
        )
    entries.sort(key=lambda e: e.at, reverse=True)
    shown = entries[:limit]
    _attach_exports(shown)
    return shown, len(entries) > limit


def _attach_exports(entries: list[Entry]) -> None:
    """Each entry's export to the account's external biller, in one query for all of them (refunds and
    write-offs are not exported)."""
    payment_ids = {e.payment.pk for e in entries if e.payment is not None}
    adjustment_ids = {e.adjustment.pk for e in entries if e.adjustment is not None}
    if not payment_ids and not adjustment_ids:
        return
    exports = ExportItem.objects.filter(
        Q(payment_id__in=payment_ids) | Q(adjustment_id__in=adjustment_ids)
    ).select_related("biller")
    by_key = {(x.kind, x.payment_id or x.adjustment_id): x for x in exports}
    for entry in entries:
        if entry.payment is None and entry.adjustment is None:
            continue
        if entry.adjustment is not None:
            entry.export = by_key.get((ExportItem.Kind.ADJUSTMENT, entry.adjustment.pk))
        elif entry.type == REVERSAL:
            entry.export = by_key.get((ExportItem.Kind.PAYMENT_REVERSAL, entry.payment.pk))
        else:
            entry.export = by_key.get((ExportItem.Kind.PAYMENT, entry.payment.pk))


def account_methods(*, account: Account) -> list[PaymentMethod]:
    """The account's payment methods, usable ones first (the default first), then the removed. One query."""
    return list(
        PaymentMethod.objects.filter(account=account).order_by(
            "removed_at", "-is_default", "-created_at", "-id"
        )
    )


def usable_methods(*, account: Account, unit: Account) -> QuerySet[PaymentMethod]:
    """Methods a payment of this account may name: the account's own or its bill unit's, not removed."""
    return PaymentMethod.objects.filter(
        account_id__in={account.pk, unit.pk}, removed_at__isnull=True
    ).order_by("-is_default", "-created_at", "-id")


def open_statements(*, unit: Account) -> QuerySet[Statement]:
    """The bill unit's statements a payment may settle, oldest due first."""
    return Statement.objects.filter(account=unit, status__in=OPEN_STATUSES).order_by(
        "due_date", "statement_date", "id"
    )


def adjustable_statements(*, unit: Account) -> QuerySet[Statement]:
    """The bill unit's statements, newest first, which an adjustment may name."""
    return Statement.objects.filter(account=unit).order_by("-statement_date", "-id")


def active_reasons() -> QuerySet[AdjustmentReason]:
    return AdjustmentReason.objects.filter(active=True).order_by("name")


def pending_count() -> int:
    return Adjustment.objects.filter(status=Adjustment.Status.PENDING).count()


def pending_adjustments(
    *,
    account_number: str = "",
    min_amount: Decimal | None = None,
    max_amount: Decimal | None = None,
    limit: int = 200,
) -> tuple[list[Adjustment], int]:
    """Adjustments waiting for a supervisor, oldest first, optionally of one account (its number) and within
    an amount range; with how many match in all. Two queries."""
    queryset = Adjustment.objects.filter(status=Adjustment.Status.PENDING)
    if account_number:
        queryset = queryset.filter(account__number=account_number)
    if min_amount is not None:
        queryset = queryset.filter(amount__gte=min_amount)
    if max_amount is not None:
        queryset = queryset.filter(amount__lte=max_amount)
    rows = list(
        queryset.select_related("account__billing_profile", "reason", "maker", "statement").order_by(
            "created_at", "id"
        )[:limit]
    )
    total = len(rows) if len(rows) < limit else queryset.count()
    return rows, total
