"""Ledger writes. Every movement of money goes through ``transaction_post``."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone

from accounts.models import Account, Biller
from billing_mgmt.audit import audit_record, audit_records_bulk, snapshot
from billing_mgmt.bulk import insert_instances
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


@dataclass
class LedgerEntry:
    """One row for ``transactions_post_bulk``; the same fields as ``transaction_post`` takes."""

    account_id: int
    kind: str
    amount: Decimal
    currency: str
    effective_date: dt.date
    idempotency_key: str
    balance_type: str = BalanceType.RECEIVABLE
    biller: Biller | None = None
    description: str = ""
    statement_id: int | None = None


@transaction.atomic
def transactions_post_bulk(*, entries: list[LedgerEntry], actor: Any = None) -> list[FinancialTransaction]:
    """Post many ledger rows at once (a billing run's bills and wallet debits): a constant number of
    queries whatever their number. Each row keeps every rule of ``transaction_post`` that the caller cannot
    already guarantee: non-zero, in the currency's minor units, an idempotency key (a repeated key fails
    the whole set with IntegrityError, so the caller's transaction rolls back and nothing is half-posted).
    Cached balances move in the same transaction and every row gets its audit record.
    """
    if not entries:
        return []
    problems = []
    for entry in entries:
        validate_currency(entry.currency)
        if entry.amount == 0 or not is_quantized(entry.amount, entry.currency) or not entry.idempotency_key:
            problems.append(entry.idempotency_key or str(entry.account_id))
    if problems:
        raise ApplicationError(
            "Ledger rows must be non-zero amounts in the currency's minor units, each with a key.",
            fields={"entries": problems[:20]},
        )
    now = timezone.now()
    created_by = (
        actor
        if getattr(actor, "is_authenticated", False) and not getattr(actor, "is_api_client", False)
        else None
    )
    rows = [
        FinancialTransaction(
            account_id=e.account_id,
            kind=e.kind,
            balance_type=e.balance_type,
            amount=e.amount,
            currency=e.currency,
            effective_date=e.effective_date,
            posted_at=now,
            biller=e.biller,
            idempotency_key=e.idempotency_key,
            description=e.description,
            statement_id=e.statement_id,
            created_by=created_by,
        )
        for e in entries
    ]
    insert_instances(rows)  # a repeated idempotency key: IntegrityError, as from bulk_create
    moves: dict[tuple[int, str], list] = defaultdict(lambda: [Decimal(0), 0, ""])
    for e in entries:
        move = moves[(e.account_id, e.balance_type)]
        move[0] += e.amount
        move[1] += 1
        move[2] = e.currency
    _move_balances(moves)
    audit_records_bulk(
        actor=actor,
        action="ledger.post",
        objects=rows,
        afters=[snapshot(row) for row in rows],
        account_ids=[row.account_id for row in rows],
    )
    return rows


def _move_balances(moves: dict[tuple[int, str], list]) -> None:
    """Add to many cached balances at once, creating the missing ones, in a fixed order (no deadlocks)."""
    keys = sorted(moves)
    if connection.vendor != "postgresql":
        for account_id, balance_type in keys:
            amount, count, currency = moves[(account_id, balance_type)]
            _move_balance(
                account=Account(pk=account_id), balance_type=balance_type, currency=currency, amount=amount
            )
        return
    table = AccountBalance._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO {table} (account_id, balance_type, currency, amount, transaction_count, updated_at)
            SELECT a, b, c, m, n, now()
            FROM unnest(%s::bigint[], %s::varchar[], %s::varchar[], %s::numeric[], %s::int[])
                AS v(a, b, c, m, n)
            ORDER BY a, b
            ON CONFLICT (account_id, balance_type) DO UPDATE SET
                amount = {table}.amount + EXCLUDED.amount,
                transaction_count = {table}.transaction_count + EXCLUDED.transaction_count,
                updated_at = EXCLUDED.updated_at
            """,
            [
                [k[0] for k in keys],
                [k[1] for k in keys],
                [moves[k][2] for k in keys],
                [moves[k][0] for k in keys],
                [moves[k][1] for k in keys],
            ],
        )


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
