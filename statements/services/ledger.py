"""Ledger writes. Every movement of money goes through ``transaction_post``."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from accounts.models import Account, Biller
from billing_mgmt.audit import audit_record, snapshot
from billing_mgmt.errors import ApplicationError, Conflict
from billing_mgmt.money import is_quantized, to_decimal, validate_currency
from statements.models import AccountBalance, BalanceType, FinancialTransaction


def _existing(*, biller: Biller | None, external_id: str, idempotency_key: str | None):
    if idempotency_key:
        found = FinancialTransaction.objects.filter(idempotency_key=idempotency_key).first()
        if found:
            return found
    if external_id:
        return FinancialTransaction.objects.filter(biller=biller, external_id=external_id).first()
    return None


def _same_request(
    row: FinancialTransaction, account: Account, kind: str, amount: Decimal, currency: str
) -> bool:
    return (
        row.account_id == account.pk
        and row.kind == kind
        and row.amount == amount
        and row.currency == currency
    )


@transaction.atomic
def transaction_post(
    *,
    account: Account,
    kind: str,
    amount: Decimal | str | int,
    currency: str,
    effective_date: dt.date | None = None,
    balance_type: str = BalanceType.RECEIVABLE,
    biller: Biller | None = None,
    external_id: str = "",
    idempotency_key: str | None = None,
    corrects: FinancialTransaction | None = None,
    description: str = "",
    statement: Any = None,
    actor: Any = None,
) -> tuple[FinancialTransaction, bool]:
    """Post one ledger row and move the cached balance with it. Returns (row, created).

    Idempotent: a repeat with the same idempotency key, or the same biller and external id, returns the
    first row (created=False). A repeat that differs in account, kind, amount or currency is a Conflict.
    """
    amount = to_decimal(amount)
    errors: dict[str, list[str]] = {}
    if kind not in FinancialTransaction.Kind.values:
        errors["kind"] = [f"'{kind}' is not a ledger row kind."]
    if balance_type not in BalanceType.values:
        errors["balance_type"] = [f"'{balance_type}' is not a balance type."]
    try:
        validate_currency(currency)
    except ValueError as exc:
        errors["currency"] = [str(exc)]
    else:
        if amount == 0:
            errors["amount"] = ["The amount must not be zero."]
        elif not is_quantized(amount, currency):
            errors["amount"] = [f"{currency} amounts have at most the currency's minor units."]
    profile_currency = getattr(getattr(account, "billing_profile", None), "currency", None)
    if profile_currency and "currency" not in errors and currency != profile_currency:
        errors["currency"] = [f"The account bills in {profile_currency}, not {currency}."]
    if corrects is not None and corrects.account_id != account.pk:
        errors["corrects"] = ["A correction must be on the same account as the row it corrects."]
    if errors:
        raise ApplicationError("The ledger row is not valid.", fields=errors)

    existing = _existing(biller=biller, external_id=external_id, idempotency_key=idempotency_key)
    if existing is not None:
        if not _same_request(existing, account, kind, amount, currency):
            raise Conflict("This key or external id was already used for a different ledger row.")
        return existing, False

    row = FinancialTransaction(
        account=account,
        kind=kind,
        balance_type=balance_type,
        amount=amount,
        currency=currency,
        effective_date=effective_date or timezone.localdate(),
        posted_at=timezone.now(),
        biller=biller,
        external_id=external_id,
        idempotency_key=idempotency_key or None,
        corrects=corrects,
        description=description,
        statement=statement,
        created_by=actor
        if getattr(actor, "is_authenticated", False) and not getattr(actor, "is_api_client", False)
        else None,
    )
    try:
        with transaction.atomic():
            row.save()
    except IntegrityError:
        # A concurrent request with the same key won the race: answer with its row.
        existing = _existing(biller=biller, external_id=external_id, idempotency_key=idempotency_key)
        if existing is None:
            raise
        if not _same_request(existing, account, kind, amount, currency):
            raise Conflict("This key or external id was already used for a different ledger row.") from None
        return existing, False

    _move_balance(account=account, balance_type=balance_type, currency=currency, amount=amount)
    audit_record(actor=actor, action="ledger.post", obj=row, after=snapshot(row), account_id=account.pk)
    return row, True


def _move_balance(*, account: Account, balance_type: str, currency: str, amount: Decimal) -> None:
    updated = AccountBalance.objects.filter(account=account, balance_type=balance_type).update(
        amount=F("amount") + amount, transaction_count=F("transaction_count") + 1, updated_at=timezone.now()
    )
    if updated:
        return
    try:
        with transaction.atomic():
            AccountBalance.objects.create(
                account=account,
                balance_type=balance_type,
                currency=currency,
                amount=amount,
                transaction_count=1,
            )
    except IntegrityError:
        # Another transaction created the row first; add to it.
        AccountBalance.objects.filter(account=account, balance_type=balance_type).update(
            amount=F("amount") + amount,
            transaction_count=F("transaction_count") + 1,
            updated_at=timezone.now(),
        )


@transaction.atomic
def transaction_reverse(
    *, original: FinancialTransaction, reason: str, actor: Any = None, idempotency_key: str | None = None
) -> tuple[FinancialTransaction, bool]:
    """Post the exact opposite of a row (a bounced payment, a mistaken charge)."""
    if not reason.strip():
        raise ApplicationError("A reversal needs a reason.", fields={"reason": ["This field is required."]})
    if original.corrects_id is not None and original.kind == FinancialTransaction.Kind.REVERSAL:
        raise ApplicationError("A reversal cannot itself be reversed; post a new row instead.")
    already = original.corrections.filter(kind=FinancialTransaction.Kind.REVERSAL).first()
    if already is not None:
        return already, False
    return transaction_post(
        account=original.account,
        kind=FinancialTransaction.Kind.REVERSAL,
        amount=-original.amount,
        currency=original.currency,
        balance_type=original.balance_type,
        corrects=original,
        description=f"Reversal: {reason.strip()}"[:300],
        idempotency_key=idempotency_key or f"reversal-of-{original.pk}",
        actor=actor,
    )


@transaction.atomic
def balances_rebuild(*, account_ids: list[int] | None = None, actor: Any = "reconcile_ledger") -> int:
    """Recompute cached balances from the ledger (the cache is derived data). Returns rows changed."""
    from statements.selectors import ledger_mismatches

    changed = 0
    for mismatch in ledger_mismatches(account_ids=account_ids):
        balance, _ = AccountBalance.objects.select_for_update().get_or_create(
            account_id=mismatch.account_id,
            balance_type=mismatch.balance_type,
            defaults={"currency": mismatch.currency},
        )
        before = snapshot(balance, ["amount", "transaction_count"])
        balance.amount = mismatch.ledger_amount
        balance.transaction_count = mismatch.ledger_count
        balance.save(update_fields=["amount", "transaction_count", "updated_at"])
        audit_record(
            actor=actor,
            action="ledger.balance_rebuild",
            obj=balance,
            before=before,
            after=snapshot(balance, ["amount", "transaction_count"]),
            account_id=mismatch.account_id,
        )
        changed += 1
    return changed
