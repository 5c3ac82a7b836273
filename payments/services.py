"""Writes of the payments app: payment methods, payments with their allocation to statements and their
reversal, and adjustments with approval limits (maker-checker).

Each service is one transaction that locks the account's bill unit first (so two entries for one account
never interleave), validates, posts its ledger row through statements.services.transaction_post (which moves
the cached balance in the same transaction), and writes an audit record. Entries are idempotent by their
idempotency key: a repeated form submission or API call returns the first entry, never a second one.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import re
import urllib.error
import urllib.request
import uuid
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Sum
from django.utils import timezone
from django.utils.module_loading import import_string

from accounts.models import Account, Biller, BillerReference
from accounts.selectors import paying_account
from billing_mgmt.audit import audit_record, audit_records_bulk, snapshot
from billing_mgmt.errors import ApplicationError, Conflict, NotFound
from billing_mgmt.http_deadline import Deadline
from billing_mgmt.money import is_quantized, quantize, to_decimal
from statements.models import AccountBalance, BalanceType, FinancialTransaction, Statement, StatementLine
from statements.services import transaction_post, transaction_reverse

from .gateway import ChargeOutcome, ChargeResult, GatewayTimeout, gateway
from .models import (
    Adjustment,
    AdjustmentLimit,
    AdjustmentReason,
    AutopayAttempt,
    ExportItem,
    Payment,
    PaymentAllocation,
    PaymentMethod,
    Refund,
    WriteOff,
)

# Statements a payment may settle.
OPEN_STATUSES = (Statement.Status.OPEN, Statement.Status.PARTIALLY_PAID, Statement.Status.OVERDUE)

# A card number as people write it, starting as card numbers do (2 to 6: Mastercard, Amex, Diners, JCB, Visa,
# Discover, UnionPay): 13 to 19 digits in one run, or in groups of four (Amex: 4-6-5) separated by spaces or
# dashes; never the fraction of a decimal number ("0.2063407529...") or a date ("2026-11-01").
_DIGIT_RUN = re.compile(
    r"(?<![\d.,])(?:[2-6]\d{12,18}|[2-6]\d{3}([ -])\d{4}\1\d{4}\1\d{1,7}|3\d{3}([ -])\d{6}\2\d{5})(?!\d)"
)


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def looks_like_card_number(text: str) -> bool:
    """13 to 19 digits (spaces or dashes allowed between them) that start as card numbers do and pass the
    Luhn check: a full card number (PAN). Such input is refused everywhere: this product never holds card
    numbers."""
    for match in _DIGIT_RUN.finditer(text or ""):
        digits = re.sub(r"\D", "", match.group())
        if 13 <= len(digits) <= 19 and _luhn_ok(digits):
            return True
    return False


CARD_NUMBER_MESSAGE = (
    "This looks like a full card number. Never enter one: card details go to the payment processor, and only "
    "its token, the brand and the last four digits are kept here."
)


def refuse_card_numbers(**fields: str) -> None:
    """Raise a 400 naming every field whose text holds something shaped like a card number."""
    bad = {
        name: [CARD_NUMBER_MESSAGE] for name, value in fields.items() if looks_like_card_number(str(value))
    }
    if bad:
        raise ApplicationError(CARD_NUMBER_MESSAGE, code="card_number_refused", fields=bad)


def _person(actor: Any):
    """The user behind an entry, for ``created_by`` (None for a task, a system or a biller's API client)."""
    if getattr(actor, "is_authenticated", False) and not getattr(actor, "is_api_client", False):
        return actor
    return None


def _locked_unit(account: Account) -> Account:
    unit = paying_account(account=account)
    return Account.objects.select_for_update(of=("self",)).select_related("billing_profile").get(pk=unit.pk)


def _valid_amount(amount: Any, currency: str, unit: Account, *, field: str = "amount") -> Decimal:
    try:
        value = to_decimal(amount)
    except (TypeError, ValueError):
        raise ApplicationError("The amount is not a number.", fields={field: ["Not a number."]}) from None
    if value <= 0:
        raise ApplicationError(
            "The amount must be more than zero.", fields={field: ["Must be more than zero."]}
        )
    profile = getattr(unit, "billing_profile", None)
    if profile is None or currency != profile.currency:
        expected = profile.currency if profile else "none"
        raise ApplicationError(
            f"The account bills in {expected}, not {currency}.",
            code="wrong_currency",
            fields={"currency": [f"Must be the account's currency ({expected})."]},
        )
    if not is_quantized(value, currency):
        raise ApplicationError(
            f"{value} has more decimals than {currency} allows.",
            fields={field: [f"Too many decimals for {currency}."]},
        )
    return value


def _open_account(unit: Account) -> None:
    if unit.status == Account.Status.CLOSED:
        raise ApplicationError(f"Account {unit.number} is closed.", code="account_closed")


# --- payment methods -----------------------------------------------------------------------------------


@transaction.atomic
def payment_method_add(
    *,
    account: Account,
    kind: str,
    token: str = "",
    brand: str = "",
    last4: str = "",
    expiry_month: int | None = None,
    expiry_year: int | None = None,
    holder: str = "",
    bank_name: str = "",
    description: str = "",
    make_default: bool = False,
    actor: Any = None,
) -> PaymentMethod:
    """Keep a payment method on file. Cards need the processor's token and the last four digits; an expired
    card is refused. Anything shaped like a full card number, in any field, is refused."""
    refuse_card_numbers(token=token, holder=holder, bank_name=bank_name, description=description, brand=brand)
    errors: dict[str, list[str]] = {}
    if kind not in PaymentMethod.Kind.values:
        errors["kind"] = [f"One of {', '.join(PaymentMethod.Kind.values)}."]
    if last4 and not re.fullmatch(r"\d{4}", last4):
        errors["last4"] = ["Exactly four digits."]
    if kind == PaymentMethod.Kind.CARD:
        if not token.strip():
            errors["token"] = ["A card needs the payment processor's token."]
        if not last4:
            errors["last4"] = ["A card needs its last four digits."]
        if expiry_month is None or expiry_year is None:
            errors["expiry_month"] = ["A card needs its expiry month and year."]
        elif not 1 <= expiry_month <= 12:
            errors["expiry_month"] = ["A month from 1 to 12."]
        else:
            today = timezone.localdate()
            if (expiry_year, expiry_month) < (today.year, today.month):
                errors["expiry_year"] = ["The card has expired."]
    if kind == PaymentMethod.Kind.BANK_ACCOUNT and not (token.strip() or last4):
        errors["token"] = ["A bank account needs the processor's token or its last four digits."]
    if kind == PaymentMethod.Kind.OTHER and not description.strip():
        errors["description"] = ["Say what the method is."]
    if errors:
        raise ApplicationError("The payment method is not valid.", fields=errors)
    _locked_unit(account)
    has_default = PaymentMethod.objects.filter(account=account, is_default=True, removed_at__isnull=True)
    if make_default or not has_default.exists():
        _unset_defaults(has_default, actor)
        make_default = True
    method = PaymentMethod.objects.create(
        account=account,
        kind=kind,
        token=token.strip(),
        brand=brand.strip(),
        last4=last4,
        expiry_month=expiry_month,
        expiry_year=expiry_year,
        holder=holder.strip(),
        bank_name=bank_name.strip(),
        description=description.strip(),
        is_default=make_default,
        created_by=_person(actor),
    )
    audit_record(
        actor=actor,
        action="payment_method.add",
        obj=method,
        after=snapshot(method, ["kind", "brand", "last4", "expiry_month", "expiry_year", "is_default"]),
        account_id=method.account_id,  # the account it is kept on (its page's history shows it)
    )
    return method


def _unset_defaults(methods, actor: Any) -> None:
    """The account's former default methods stop being the default: each change audited (in the caller's
    transaction), so the history says which method lost the default and when."""
    former = list(methods.filter(is_default=True).select_for_update(of=("self",)))
    if not former:
        return
    PaymentMethod.objects.filter(pk__in=[m.pk for m in former]).update(is_default=False)
    audit_records_bulk(
        actor=actor,
        action="payment_method.unset_default",
        objects=former,
        befores=[{"is_default": True}] * len(former),
        afters=[{"is_default": False}] * len(former),
        account_ids=[m.account_id for m in former],
    )


@transaction.atomic
def payment_method_set_default(*, method: PaymentMethod, actor: Any = None) -> PaymentMethod:
    method = PaymentMethod.objects.select_for_update().get(pk=method.pk)
    if method.removed_at is not None:
        raise ApplicationError("A removed payment method cannot be the default.", code="method_removed")
    if method.is_default:
        return method  # nothing changes
    _unset_defaults(PaymentMethod.objects.filter(account_id=method.account_id).exclude(pk=method.pk), actor)
    method.is_default = True
    method.save(update_fields=["is_default"])
    audit_record(
        actor=actor,
        action="payment_method.set_default",
        obj=method,
        before={"is_default": False},
        after={"is_default": True},
        account_id=method.account_id,
    )
    return method


@transaction.atomic
def payment_method_remove(*, method: PaymentMethod, actor: Any = None) -> PaymentMethod:
    """Take a method out of use; it stays for the history of what it paid."""
    method = PaymentMethod.objects.select_for_update().get(pk=method.pk)
    if method.removed_at is not None:
        return method
    fields = ["removed_at", "is_default"]
    before = snapshot(method, fields)
    method.removed_at = timezone.now()
    method.is_default = False
    method.save(update_fields=fields)
    audit_record(
        actor=actor,
        action="payment_method.remove",
        obj=method,
        before=before,
        after=snapshot(method, fields),
        account_id=method.account_id,
    )
    return method


# --- payments ------------------------------------------------------------------------------------------


def _allocated(statement_ids: list[int]) -> dict[int, Decimal]:
    return dict(
        PaymentAllocation.objects.filter(statement_id__in=statement_ids, reversed=False)
        .values("statement_id")
        .annotate(total=Sum("amount"))
        .values_list("statement_id", "total")
    )


def _settle(statements: list[Statement], actor: Any = None, cause: str = "") -> None:
    """Each statement's status from what is allocated to it: paid, partially paid, or open (overdue once its
    due date has passed). Each status that moves is audited (``statement.status``, with its ``cause``)."""
    allocated = _allocated([s.pk for s in statements])
    # A bill reversed by a corrective bill stays settled by it, whatever is still allocated to it.
    corrected = Statement.objects.filter(corrects__in=[s.pk for s in statements])
    reversed_ids = set(corrected.values_list("corrects_id", flat=True))
    today = timezone.localdate()
    moved: list[tuple[Statement, str]] = []
    for statement in statements:
        paid = allocated.get(statement.pk, Decimal(0))
        owed = statement.ledger_amount
        if statement.pk in reversed_ids or (owed > 0 and paid >= owed):
            status = Statement.Status.PAID
        elif paid > 0:
            status = Statement.Status.PARTIALLY_PAID
        else:
            status = Statement.Status.OVERDUE if statement.due_date < today else Statement.Status.OPEN
        if status != statement.status:
            moved.append((statement, statement.status))
            statement.status = status
            statement.save(update_fields=["status"])
    if moved:
        audit_records_bulk(
            actor=actor,
            action="statement.status",
            objects=[s for s, _ in moved],
            befores=[{"status": was} for _, was in moved],
            afters=[{"status": s.status, "cause": cause} for s, _ in moved],
            account_ids=[s.account_id for s, _ in moved],
        )


def allocation_plan(
    *, statements: list[Statement], allocated: dict[int, Decimal], amount: Decimal
) -> list[tuple[Statement, Decimal]]:
    """How ``amount`` settles these statements in the order given: each takes what it still owes (its own
    charges, tax included, less what is already allocated to it) until the amount runs out."""
    plan = []
    left = amount
    for statement in statements:
        if left <= 0:
            break
        owed = statement.ledger_amount - allocated.get(statement.pk, Decimal(0))
        if owed <= 0:
            continue
        take = min(owed, left)
        plan.append((statement, take))
        left -= take
    return plan


def _existing_payment(key: str, unit: Account, amount: Decimal, currency: str) -> Payment | None:
    existing = Payment.objects.filter(idempotency_key=key).first()
    if existing is None:
        return None
    if (existing.account_id, existing.amount, existing.currency) != (unit.pk, amount, currency):
        raise Conflict(
            "This idempotency key was used for a different payment.", code="idempotency_key_reused"
        )
    return existing


@transaction.atomic
def payment_post(
    *,
    account: Account,
    amount: Any,
    currency: str,
    idempotency_key: str,
    payment_date: dt.date | None = None,
    method: PaymentMethod | None = None,
    reference: str = "",
    statement: Statement | None = None,
    channel: str = Payment.Channel.CSR,
    actor: Any = None,
) -> tuple[Payment, bool]:
    """Post a payment received on the account's bill unit and allocate it: to ``statement`` first when one
    is chosen, then to the open statements oldest due first; what is left is a credit on the account.
    Returns (payment, created); a repeated idempotency key returns the first payment."""
    if not (idempotency_key or "").strip():
        raise ApplicationError(
            "A payment needs an idempotency key.", fields={"idempotency_key": ["Required."]}
        )
    refuse_card_numbers(reference=reference)
    unit = _locked_unit(account)
    value = _valid_amount(amount, currency, unit)
    existing = _existing_payment(idempotency_key, unit, value, currency)
    if existing is not None:
        return existing, False
    _open_account(unit)
    if method is not None and (method.account_id != account.pk and method.account_id != unit.pk):
        raise ApplicationError(
            "That payment method belongs to another account.", fields={"method": ["Unknown."]}
        )
    if method is not None and not method.is_usable:
        raise ApplicationError(
            "That payment method was removed.", code="method_removed", fields={"method": ["Removed."]}
        )
    if statement is not None and statement.account_id != unit.pk:
        raise ApplicationError("That statement is another account's.", fields={"statement": ["Unknown."]})
    payment_date = payment_date or timezone.localdate()
    if payment_date > timezone.localdate():
        raise ApplicationError(
            "A payment cannot be dated in the future.", fields={"payment_date": ["In the future."]}
        )
    description = f"Payment{f' {reference}' if reference else ''}"[:300]
    if _is_prepaid(unit):
        details = (method, reference, channel, idempotency_key, description, actor)
        return _wallet_payment(unit, value, currency, payment_date, *details), True
    row, _ = transaction_post(
        account=unit,
        kind=FinancialTransaction.Kind.PAYMENT,
        amount=-value,
        currency=currency,
        effective_date=payment_date,
        idempotency_key=f"payment:{idempotency_key}",
        description=description,
        actor=actor,
    )
    open_statements = list(
        Statement.objects.select_for_update(of=("self",))
        .filter(account=unit, status__in=OPEN_STATUSES, currency=currency)
        .order_by("due_date", "statement_date", "id")
    )
    if statement is not None:
        open_statements.sort(key=lambda s: s.pk != statement.pk)
    plan = allocation_plan(
        statements=open_statements, allocated=_allocated([s.pk for s in open_statements]), amount=value
    )
    payment = Payment.objects.create(
        account=unit,
        amount=value,
        currency=currency,
        payment_date=payment_date,
        method=method,
        reference=reference.strip(),
        channel=channel,
        transaction=row,
        unallocated=value - sum((take for _, take in plan), Decimal(0)),
        idempotency_key=idempotency_key,
        created_by=_person(actor),  # a biller's API client is authenticated but not a user
    )
    PaymentAllocation.objects.bulk_create(
        PaymentAllocation(payment=payment, statement=s, amount=take) for s, take in plan
    )
    _settle([s for s, _ in plan], actor, f"payment {payment.pk}")
    _export_payment(payment, plan)
    audit_record(
        actor=actor,
        action="payment.post",
        obj=payment,
        after=snapshot(payment, ["amount", "currency", "payment_date", "method", "reference", "unallocated"])
        | {"allocations": {s.number: str(take) for s, take in plan}},
        account_id=unit.pk,
    )
    return payment, True


def _is_prepaid(unit: Account) -> bool:
    check = getattr(settings, "PAYMENTS_PREPAID_CHECK", "")
    return bool(check) and import_string(check)(account=unit)


def _wallet_payment(unit, value, currency, payment_date, method, reference, channel, key, description, actor):
    """A prepaid account's payment goes into its wallet (a WALLET_TOPUP row through the engine's top-up,
    which also refreshes the wallet's run-out estimate); there is nothing to allocate."""
    row, _ = import_string(settings.PAYMENTS_WALLET_TOPUP)(
        account=unit,
        amount=value,
        currency=currency,
        effective_date=payment_date,
        idempotency_key=f"payment:{key}",
        description=description,
        actor=actor,
    )
    payment = Payment.objects.create(
        account=unit,
        amount=value,
        currency=currency,
        payment_date=payment_date,
        method=method,
        reference=reference.strip(),
        channel=channel,
        transaction=row,
        unallocated=Decimal(0),
        idempotency_key=key,
        created_by=_person(actor),
    )
    audit_record(
        actor=actor,
        action="payment.post",
        obj=payment,
        after=snapshot(payment, ["amount", "currency", "payment_date", "method", "reference"])
        | {"wallet": True},
        account_id=unit.pk,
    )
    return payment


@transaction.atomic
def payment_reverse(*, payment: Payment, reason: str, actor: Any = None, export: bool = True) -> Payment:
    """Reverse a payment (it bounced, it was entered by mistake): the opposite ledger row, its allocations
    taken back and the statements it settled open again; the biller that received it gets the reversal
    (``export=False``: the biller itself rejected it). A payment is reversed once."""
    if not (reason or "").strip():
        raise ApplicationError("Say why the payment is reversed.", fields={"reason": ["Required."]})
    _locked_unit(payment.account)
    payment = Payment.objects.select_for_update(of=("self",)).select_related("transaction").get(pk=payment.pk)
    if payment.status == Payment.Status.REVERSED:
        raise Conflict("This payment is already reversed.", code="already_reversed")
    row, _ = transaction_reverse(original=payment.transaction, reason=reason.strip(), actor=actor)
    statements = list(
        Statement.objects.select_for_update(of=("self",)).filter(
            pk__in=PaymentAllocation.objects.filter(payment=payment).values("statement_id")
        )
    )
    payment.allocations.update(reversed=True)
    before = {"status": payment.status}
    payment.status = Payment.Status.REVERSED
    payment.reversal = row
    payment.reversal_reason = reason.strip()[:300]
    payment.save(update_fields=["status", "reversal", "reversal_reason"])
    _settle(statements, actor, f"payment {payment.pk} reversed")
    if export:
        _export_payment_reversal(payment)
    audit_record(
        actor=actor,
        action="payment.reverse",
        obj=payment,
        before=before,
        after={"status": payment.status, "reason": payment.reversal_reason, "reversal": row.pk},
        account_id=payment.account_id,
    )
    return payment


# --- adjustments ---------------------------------------------------------------------------------------


def adjustment_limit(*, user: Any, currency: str) -> Decimal | None:
    """What ``user`` may post without approval in this currency: their own limit, else the highest of their
    roles', else None (every adjustment needs approval)."""
    if not getattr(user, "is_authenticated", False):
        return None
    own = (
        AdjustmentLimit.objects.filter(user=user, currency=currency)
        .values_list("max_amount", flat=True)
        .first()
    )
    if own is not None:
        return own
    return (
        AdjustmentLimit.objects.filter(role__in=user.groups.all(), currency=currency)
        .order_by("-max_amount")
        .values_list("max_amount", flat=True)
        .first()
    )


def _post_adjustment(
    adjustment: Adjustment, actor: Any, kind: str = FinancialTransaction.Kind.ADJUSTMENT
) -> None:
    row, _ = transaction_post(
        account=adjustment.account,
        kind=kind,
        amount=adjustment.signed_amount,
        currency=adjustment.currency,
        effective_date=timezone.localdate(),
        idempotency_key=f"adjustment:{adjustment.pk}",
        description=f"{adjustment.reason.name}{f': {adjustment.note}' if adjustment.note else ''}"[:300],
        actor=actor,
    )
    adjustment.transaction = row
    adjustment.status = Adjustment.Status.POSTED
    _export_adjustment(adjustment)


def _existing_adjustment(key: str, unit: Account, value: Decimal, direction: str) -> Adjustment | None:
    """The adjustment a repeated idempotency key made (None the first time); the key used for another
    adjustment is a 409."""
    existing = Adjustment.objects.filter(idempotency_key=key).first()
    if existing is not None and (existing.account_id, existing.amount, existing.direction) != (
        unit.pk, value, direction,
    ):  # fmt: skip
        raise Conflict(
            "This idempotency key was used for a different adjustment.", code="idempotency_key_reused"
        )
    return existing


@transaction.atomic
def adjustment_request(
    *,
    account: Account,
    direction: str,
    amount: Any,
    currency: str,
    reason: AdjustmentReason,
    idempotency_key: str,
    note: str = "",
    statement: Statement | None = None,
    statement_line: StatementLine | None = None,
    actor: Any,
) -> tuple[Adjustment, bool]:
    """Make an adjustment. Within the maker's limit it posts at once; above it (or with no limit) it waits
    for a supervisor. Returns (adjustment, created); a repeated key returns the first one."""
    if not getattr(actor, "is_authenticated", False):
        raise ApplicationError("Adjustments are made by a signed-in person.", code="maker_required")
    if not (idempotency_key or "").strip():
        raise ApplicationError(
            "An adjustment needs an idempotency key.", fields={"idempotency_key": ["Required."]}
        )
    refuse_card_numbers(note=note)
    unit = _locked_unit(account)
    value = _valid_amount(amount, currency, unit)
    existing = _existing_adjustment(idempotency_key, unit, value, direction)
    if existing is not None:
        return existing, False
    _open_account(unit)
    errors: dict[str, list[str]] = {}
    if direction not in Adjustment.Direction.values:
        errors["direction"] = ["Credit or debit."]
    if not reason.active:
        errors["reason"] = ["This reason is no longer used."]
    elif reason.direction != AdjustmentReason.Direction.BOTH and reason.direction != direction:
        errors["reason"] = [f"This reason is for {reason.get_direction_display().lower()}."]
    if statement_line is not None:
        statement = statement or statement_line.statement
        if statement_line.statement_id != statement.pk:
            errors["statement_line"] = ["The line is not on that statement."]
    if statement is not None and statement.account_id != unit.pk:
        errors["statement"] = ["That statement is another account's."]
    if errors:
        raise ApplicationError("The adjustment is not valid.", fields=errors)
    limit = adjustment_limit(user=actor, currency=currency)
    within = limit is not None and value <= limit
    adjustment = Adjustment(
        account=unit,
        direction=direction,
        amount=value,
        currency=currency,
        reason=reason,
        note=note.strip(),
        statement=statement,
        statement_line=statement_line,
        status=Adjustment.Status.PENDING,
        maker=actor,
        idempotency_key=idempotency_key,
    )
    adjustment.save()
    if within:
        _post_adjustment(adjustment, actor)
        adjustment.save(update_fields=["transaction", "status"])
    audit_record(
        actor=actor,
        action="adjustment.post" if within else "adjustment.request",
        obj=adjustment,
        after=snapshot(adjustment, ["direction", "amount", "currency", "reason", "status", "statement"])
        | {"limit": None if limit is None else str(limit)},
        account_id=unit.pk,
    )
    return adjustment, True


@transaction.atomic
def adjustment_post_decided(
    *,
    account: Account,
    amount: Any,
    currency: str,
    reason: AdjustmentReason,
    idempotency_key: str,
    maker: Any,
    checker: Any,
    note: str = "",
    statement: Statement | None = None,
    statement_line: StatementLine | None = None,
    kind: str = FinancialTransaction.Kind.ADJUSTMENT,
) -> tuple[Adjustment, bool]:
    """A credit decided by someone entitled to decide it (a supervisor resolving a dispute): posted at once,
    with who asked for it (``maker``) and who decided (``checker``), its ledger row of ``kind`` and its export
    to the biller, like any adjustment. The caller checked the checker's permission. Returns (adjustment,
    created); a repeated key returns the first one."""
    if not getattr(checker, "is_authenticated", False):
        raise ApplicationError(
            "A decided adjustment needs the person who decided it.", code="checker_required"
        )
    refuse_card_numbers(note=note)
    unit = _locked_unit(account)
    value = _valid_amount(amount, currency, unit)
    existing = _existing_adjustment(idempotency_key, unit, value, Adjustment.Direction.CREDIT)
    if existing is not None:
        return existing, False
    if not getattr(maker, "is_authenticated", False) or maker.pk == checker.pk:
        maker, checker = checker, None  # the decider made it (no separate maker to check)
    adjustment = Adjustment(
        account=unit,
        direction=Adjustment.Direction.CREDIT,
        amount=value,
        currency=currency,
        reason=reason,
        note=note.strip()[:300],
        statement=statement,
        statement_line=statement_line,
        status=Adjustment.Status.PENDING,
        maker=maker,
        checker=checker,
        decided_at=timezone.now(),
        idempotency_key=idempotency_key,
    )
    adjustment.save()
    _post_adjustment(adjustment, checker or maker, kind=kind)
    adjustment.save(update_fields=["transaction", "status"])
    audit_record(
        actor=checker or maker,
        action="adjustment.post",
        obj=adjustment,
        after=snapshot(adjustment, ["direction", "amount", "currency", "reason", "status", "statement"])
        | {"decided": True},
        account_id=unit.pk,
    )
    return adjustment, True


def _decidable(adjustment: Adjustment, actor: Any) -> Adjustment:
    if not getattr(actor, "is_authenticated", False) or not actor.has_perm("payments.approve_adjustment"):
        raise ApplicationError("Only a supervisor approves adjustments.", code="not_a_supervisor")
    locked = (
        Adjustment.objects.select_for_update(of=("self",))
        .select_related("reason", "account")
        .get(pk=adjustment.pk)
    )
    if locked.status != Adjustment.Status.PENDING:
        raise Conflict(
            f"This adjustment is already {locked.get_status_display().lower()}.", code="already_decided"
        )
    if locked.maker_id == actor.pk:
        raise ApplicationError("You cannot approve or reject your own adjustment.", code="maker_cannot_check")
    return locked


@transaction.atomic
def adjustment_approve(*, adjustment: Adjustment, actor: Any, comment: str = "") -> Adjustment:
    _locked_unit(adjustment.account)
    adjustment = _decidable(adjustment, actor)
    _post_adjustment(adjustment, actor)
    adjustment.checker = actor
    adjustment.decision_comment = comment.strip()[:300]
    adjustment.decided_at = timezone.now()
    adjustment.save(update_fields=["transaction", "status", "checker", "decision_comment", "decided_at"])
    audit_record(
        actor=actor,
        action="adjustment.approve",
        obj=adjustment,
        before={"status": Adjustment.Status.PENDING},
        after={"status": adjustment.status, "comment": adjustment.decision_comment},
        account_id=adjustment.account_id,
    )
    return adjustment


@transaction.atomic
def adjustment_reject(*, adjustment: Adjustment, actor: Any, comment: str) -> Adjustment:
    if not (comment or "").strip():
        raise ApplicationError("Say why the adjustment is rejected.", fields={"comment": ["Required."]})
    adjustment = _decidable(adjustment, actor)
    adjustment.status = Adjustment.Status.REJECTED
    adjustment.checker = actor
    adjustment.decision_comment = comment.strip()[:300]
    adjustment.decided_at = timezone.now()
    adjustment.save(update_fields=["status", "checker", "decision_comment", "decided_at"])
    audit_record(
        actor=actor,
        action="adjustment.reject",
        obj=adjustment,
        before={"status": Adjustment.Status.PENDING},
        after={"status": adjustment.status, "comment": adjustment.decision_comment},
        account_id=adjustment.account_id,
    )
    return adjustment


# --- refunds and write-offs ----------------------------------------------------------------------------


def _receivable(unit: Account) -> Decimal:
    """What the account owes now (negative: a credit), from its cached balance (moved with every row)."""
    balance = AccountBalance.objects.filter(account=unit, balance_type=BalanceType.RECEIVABLE).first()
    return balance.amount if balance else Decimal(0)


def _replay(model, key: str, unit: Account, value: Decimal, what: str):
    """The entry a repeated idempotency key made (None: the key is new); the key with other values is a
    conflict."""
    existing = model.objects.filter(idempotency_key=key).first()
    if existing is not None and (existing.account_id, existing.amount) != (unit.pk, value):
        raise Conflict(
            f"This idempotency key was used for a different {what}.", code="idempotency_key_reused"
        )
    return existing


def _balance_entry(
    model, kind: str, signed: Decimal, *, unit, currency, reason, idempotency_key, actor, **extra
):
    """A refund's or write-off's ledger row (``signed``: its effect on what is owed), the entry and its
    audit record (in the caller's transaction)."""
    label = FinancialTransaction.Kind(kind).label
    row, _ = transaction_post(
        account=unit,
        kind=kind,
        amount=signed,
        currency=currency,
        idempotency_key=f"{kind}:{idempotency_key}",
        description=f"{label}: {reason.strip()}"[:300],
        actor=actor,
    )
    entry = model.objects.create(
        account=unit,
        amount=abs(signed),
        currency=currency,
        reason=reason.strip()[:300],
        transaction=row,
        idempotency_key=idempotency_key,
        created_by=_person(actor),
        **extra,
    )
    audit_record(
        actor=actor,
        action=f"{kind}.post",
        obj=entry,
        after=snapshot(entry, ["amount", "currency", "reason"]),
        account_id=unit.pk,
    )
    return entry


@transaction.atomic
def refund_post(
    *,
    account: Account,
    amount: Any,
    currency: str,
    reason: str,
    idempotency_key: str,
    method: PaymentMethod | None = None,
    actor: Any = None,
) -> tuple[Refund, bool]:
    """Pay back part or all of a credit balance. Refused above the credit (``exceeds_credit``)."""
    if not (reason or "").strip():
        raise ApplicationError("Say why the money is paid back.", fields={"reason": ["Required."]})
    refuse_card_numbers(reason=reason)
    unit = _locked_unit(account)
    value = _valid_amount(amount, currency, unit)
    existing = _replay(Refund, idempotency_key, unit, value, "refund")
    if existing is not None:
        return existing, False
    if method is not None and (method.account_id not in (account.pk, unit.pk) or not method.is_usable):
        raise ApplicationError(
            "That payment method cannot be used.", fields={"method": ["Unknown or removed."]}
        )
    credit = -_receivable(unit)
    if value > credit:
        most = quantize(max(credit, Decimal(0)), currency)
        raise ApplicationError(
            f"The account's credit is {most} {currency}: a refund cannot be more.",
            code="exceeds_credit",
            fields={"amount": [f"At most {most}."]},
        )
    return _balance_entry(
        Refund,
        FinancialTransaction.Kind.REFUND,
        value,
        unit=unit,
        currency=currency,
        reason=reason,
        idempotency_key=idempotency_key,
        actor=actor,
        method=method,
    ), True


@transaction.atomic
def write_off_post(
    *, account: Account, amount: Any, currency: str, reason: str, idempotency_key: str, actor: Any
) -> tuple[WriteOff, bool]:
    """Write off an uncollectable balance (supervisors: payments.write_off_balance). Refused above what the
    account owes (``exceeds_balance``). The statements keep their status (they were not paid)."""
    if not getattr(actor, "is_authenticated", False) or not actor.has_perm("payments.write_off_balance"):
        raise ApplicationError("Only a supervisor writes off a balance.", code="not_a_supervisor")
    if not (reason or "").strip():
        raise ApplicationError("Say why the balance is written off.", fields={"reason": ["Required."]})
    refuse_card_numbers(reason=reason)
    unit = _locked_unit(account)
    value = _valid_amount(amount, currency, unit)
    existing = _replay(WriteOff, idempotency_key, unit, value, "write-off")
    if existing is not None:
        return existing, False
    owed = _receivable(unit)
    if value > owed:
        most = quantize(max(owed, Decimal(0)), currency)
        raise ApplicationError(
            f"The account owes {most} {currency}: a write-off cannot be more.",
            code="exceeds_balance",
            fields={"amount": [f"At most {most}."]},
        )
    return _balance_entry(
        WriteOff,
        FinancialTransaction.Kind.WRITE_OFF,
        -value,
        unit=unit,
        currency=currency,
        reason=reason,
        idempotency_key=idempotency_key,
        actor=actor,
    ), True


# --- export to billers (the outbox) --------------------------------------------------------------------
#
# An entry for an account billed by an external biller is queued for that biller in the entry's own
# transaction (an ExportItem with a stable export_id and its payload frozen). Push billers get a signed POST
# from a Celery task, retried with backoff and dead-lettered after EXPORT_MAX_ATTEMPTS; poll billers read
# pending exports from the API. Either way the biller confirms or rejects each one; a rejection posts the
# reversal here and shows on the account page.

EXPORT_MAX_ATTEMPTS_DEFAULT = 8
EXPORT_TIMEOUT_SECONDS_DEFAULT = 10
SIGNATURE_HEADER = "X-Billing-Signature"


def export_signature(secret: str, body: bytes) -> str:
    """``sha256=<hex>``: HMAC-SHA256 of the exact body with the biller's secret (the biller computes the same
    over the bytes it received and compares in constant time)."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _external_billers(unit: Account) -> list[Biller]:
    return [
        ref.biller
        for ref in BillerReference.objects.filter(account=unit, biller__kind=Biller.Kind.EXTERNAL)
        .select_related("biller")
        .order_by("biller__code")
    ]


def _biller_for(unit: Account, statements: list[Statement]) -> Biller | None:
    """Whose entry it is: the external biller of the (first) statement it settles or corrects; else the
    account's only external biller; else none (this product's own: nothing to export)."""
    for statement in statements:
        if statement.biller.kind == Biller.Kind.EXTERNAL:
            return statement.biller
    billers = _external_billers(unit)
    return billers[0] if len(billers) == 1 else None


def _payload(
    *,
    item_id: uuid.UUID,
    kind: str,
    biller: Biller,
    unit: Account,
    amount: Decimal,
    currency: str,
    day: dt.date,
    **details: Any,
) -> dict[str, Any]:
    reference = BillerReference.objects.filter(account=unit, biller=biller).values_list(
        "external_ref", flat=True
    )
    return {
        "export_id": str(item_id),
        "type": kind,
        "account": {"number": unit.number, "reference": reference.first() or ""},
        "amount": str(amount),
        "currency": currency,
        "date": day.isoformat(),
        **{k: v for k, v in details.items() if v not in (None, "")},
    }


def _queue_export(
    *, kind: str, biller: Biller, unit: Account, payment=None, adjustment=None, payload
) -> ExportItem:
    push = biller.export_mode == Biller.ExportMode.PUSH
    item = ExportItem.objects.create(
        export_id=uuid.UUID(payload["export_id"]),
        biller=biller,
        account=unit,
        kind=kind,
        payment=payment,
        adjustment=adjustment,
        payload=payload,
        next_attempt_at=timezone.now() if push else None,
    )
    if push:
        transaction.on_commit(lambda: _dispatch_export(item.pk))
    return item


def _dispatch_export(item_pk: int) -> None:
    from .tasks import deliver_export

    deliver_export.delay(item_pk)


def _export_payment(payment: Payment, plan: list[tuple[Statement, Decimal]]) -> None:
    unit = payment.account
    biller = _biller_for(unit, [s for s, _ in plan])
    if biller is None:
        return
    item_id = uuid.uuid4()
    payload = _payload(
        item_id=item_id,
        kind=ExportItem.Kind.PAYMENT,
        biller=biller,
        unit=unit,
        amount=payment.amount,
        currency=payment.currency,
        day=payment.payment_date,
        reference=payment.reference,
        method=str(payment.method) if payment.method else "",
        statements=[
            {"number": s.number, "external_id": s.external_id, "amount": str(take)}
            for s, take in plan
            if s.biller_id == biller.pk
        ],
    )
    _queue_export(kind=ExportItem.Kind.PAYMENT, biller=biller, unit=unit, payment=payment, payload=payload)


def _export_payment_reversal(payment: Payment) -> None:
    original = payment.exports.filter(kind=ExportItem.Kind.PAYMENT).select_related("biller").first()
    if original is None or original.status == ExportItem.Status.REJECTED:
        return  # never exported, or the biller refused it: nothing to take back there
    item_id = uuid.uuid4()
    payload = _payload(
        item_id=item_id,
        kind=ExportItem.Kind.PAYMENT_REVERSAL,
        biller=original.biller,
        unit=payment.account,
        amount=payment.amount,
        currency=payment.currency,
        day=timezone.localdate(),
        reason=payment.reversal_reason,
        reverses=str(original.export_id),
    )
    _queue_export(
        kind=ExportItem.Kind.PAYMENT_REVERSAL,
        biller=original.biller,
        unit=payment.account,
        payment=payment,
        payload=payload,
    )


def _export_adjustment(adjustment: Adjustment) -> None:
    unit = adjustment.account
    statements = [adjustment.statement] if adjustment.statement_id else []
    biller = _biller_for(unit, statements)
    if biller is None:
        return
    item_id = uuid.uuid4()
    payload = _payload(
        item_id=item_id,
        kind=ExportItem.Kind.ADJUSTMENT,
        biller=biller,
        unit=unit,
        amount=adjustment.signed_amount,
        currency=adjustment.currency,
        day=timezone.localdate(),
        direction=adjustment.direction,
        reason_code=adjustment.reason.code,
        reason=adjustment.reason.name,
        note=adjustment.note,
        statement=adjustment.statement.external_id if adjustment.statement_id else "",
        statement_line=adjustment.statement_line.external_id if adjustment.statement_line_id else "",
    )
    _queue_export(
        kind=ExportItem.Kind.ADJUSTMENT, biller=biller, unit=unit, adjustment=adjustment, payload=payload
    )


def _max_attempts() -> int:
    return int(getattr(settings, "PAYMENTS_EXPORT_MAX_ATTEMPTS", EXPORT_MAX_ATTEMPTS_DEFAULT))


def _backoff(attempts: int) -> dt.timedelta:
    return dt.timedelta(minutes=min(2 ** (attempts - 1), 240))


def _post(url: str, body: bytes, headers: dict[str, str]) -> int:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    timeout = float(getattr(settings, "PAYMENTS_EXPORT_TIMEOUT_SECONDS", EXPORT_TIMEOUT_SECONDS_DEFAULT))
    # The timeout bounds the whole exchange, not only each read: a biller that trickles its answer must not
    # keep the worker (and the export's row lock) for hours.
    with Deadline(timeout) as deadline, deadline.opener().open(request, timeout=timeout) as response:
        return response.status


def export_deliver(*, item_pk: int) -> str:
    """Push one export to its biller (the task's work). Sends only while it is pending and due, under the
    row's lock, so a redelivered task or a concurrent retry never sends it twice at once; a biller that
    receives it twice anyway (a crash after its answer) recognises the export_id. Returns what happened."""
    with transaction.atomic():
        item = (
            ExportItem.objects.select_for_update(of=("self",))
            .select_related("biller")
            .filter(pk=item_pk)
            .first()
        )
        if item is None or item.status != ExportItem.Status.PENDING:
            return "skipped"
        if item.next_attempt_at and item.next_attempt_at > timezone.now():
            return "not due"
        biller = item.biller
        if biller.export_mode != Biller.ExportMode.PUSH:
            return "poll"
        body = json.dumps(item.payload, sort_keys=True, separators=(",", ":")).encode()
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: export_signature(biller.export_secret, body),
            "X-Billing-Export-Id": str(item.export_id),
        }
        item.attempts += 1
        try:
            status = _post(biller.export_url, body, headers)
            error = "" if 200 <= status < 300 else f"HTTP {status}"
        except urllib.error.HTTPError as exc:
            error = f"HTTP {exc.code}"
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            error = f"{type(exc).__name__}: {exc}"[:500]
        if not error:
            item.status = ExportItem.Status.DELIVERED
            item.delivered_at = timezone.now()
            item.last_error = ""
            item.next_attempt_at = None
            outcome = "delivered"
        elif item.attempts >= _max_attempts():
            item.status = ExportItem.Status.DEAD
            item.last_error = error
            item.next_attempt_at = None
            outcome = "dead"
        else:
            item.last_error = error
            item.next_attempt_at = timezone.now() + _backoff(item.attempts)
            outcome = "retrying"
        item.save(update_fields=["status", "attempts", "delivered_at", "last_error", "next_attempt_at"])
        if outcome == "dead":
            audit_record(
                actor="task:payments.deliver_export",
                action="export.dead",
                obj=item,
                after={"attempts": item.attempts, "error": error},
                account_id=item.account_id,
            )
        return outcome


def exports_due() -> list[int]:
    """Push exports whose (next) attempt is due (the beat job queues them)."""
    return list(
        ExportItem.objects.filter(
            status=ExportItem.Status.PENDING,
            biller__export_mode=Biller.ExportMode.PUSH,
            next_attempt_at__lte=timezone.now(),
        ).values_list("pk", flat=True)[:1000]
    )


@transaction.atomic
def export_retry(*, item_pk: int, actor: Any) -> ExportItem:
    """An admin's retry of a dead export: pending again, due now, with a fresh count of attempts."""
    item = ExportItem.objects.select_for_update().get(pk=item_pk)
    if item.status != ExportItem.Status.DEAD:
        raise Conflict(
            f"Only a failed export is retried (this one is {item.get_status_display()}).", code="not_dead"
        )
    item.status, item.attempts, item.next_attempt_at = ExportItem.Status.PENDING, 0, timezone.now()
    item.save(update_fields=["status", "attempts", "next_attempt_at"])
    audit_record(actor=actor, action="export.retry", obj=item, account_id=item.account_id)
    transaction.on_commit(lambda: _dispatch_export(item.pk))
    return item


def _biller_export(biller: Biller, export_id: Any) -> ExportItem:
    try:
        key = uuid.UUID(str(export_id))
    except ValueError:
        raise NotFound("No such export.", code="not_found") from None
    item = (
        ExportItem.objects.select_for_update(of=("self",))
        .select_related("payment", "adjustment__reason", "account")
        .filter(export_id=key, biller=biller)
        .first()
    )
    if item is None:
        raise NotFound("No such export.", code="not_found")
    return item


@transaction.atomic
def export_acknowledge(*, biller: Biller, export_id: Any) -> ExportItem:
    """A polling biller took the export (idempotent)."""
    item = _biller_export(biller, export_id)
    if item.status in (ExportItem.Status.PENDING, ExportItem.Status.DEAD):
        item.status, item.delivered_at, item.next_attempt_at = (
            ExportItem.Status.DELIVERED,
            timezone.now(),
            None,
        )
        item.save(update_fields=["status", "delivered_at", "next_attempt_at"])
    return item


@transaction.atomic
def export_answer(
    *, biller: Biller, export_id: Any, accepted: bool, reason: str = "", actor: Any = None
) -> ExportItem:
    """The biller's answer: confirmed, or rejected with a reason, which posts the reversal here (a payment's
    reversing row; an adjustment's opposite row). The same answer again is harmless; a different one after
    the first is a conflict."""
    item = _biller_export(biller, export_id)
    wanted = ExportItem.Status.CONFIRMED if accepted else ExportItem.Status.REJECTED
    if item.status in (ExportItem.Status.CONFIRMED, ExportItem.Status.REJECTED):
        if item.status != wanted:
            raise Conflict(
                f"This export was already {item.get_status_display().lower()}.", code="already_answered"
            )
        return item
    if not accepted and not (reason or "").strip():
        raise ApplicationError("Say why the export is rejected.", fields={"reason": ["Required."]})
    item.status = wanted
    item.answered_at = timezone.now()
    item.delivered_at = item.delivered_at or item.answered_at
    item.rejection_reason = (reason or "").strip()[:300]
    item.save(update_fields=["status", "answered_at", "delivered_at", "rejection_reason"])
    if not accepted:
        _undo_rejected(item, actor)
    audit_record(
        actor=actor,
        action="export.confirm" if accepted else "export.reject",
        obj=item,
        after={"status": item.status, "reason": item.rejection_reason},
        account_id=item.account_id,
    )
    return item


def _undo_rejected(item: ExportItem, actor: Any) -> None:
    why = f"Rejected by {item.biller.name}: {item.rejection_reason}"[:300]
    if item.kind == ExportItem.Kind.PAYMENT and item.payment.status == Payment.Status.POSTED:
        payment_reverse(payment=item.payment, reason=why, actor=actor, export=False)
    elif item.kind == ExportItem.Kind.ADJUSTMENT and item.adjustment.status == Adjustment.Status.POSTED:
        adjustment = (
            Adjustment.objects.select_for_update(of=("self",))
            .select_related("transaction")
            .get(pk=item.adjustment_id)
        )
        row, _ = transaction_reverse(original=adjustment.transaction, reason=why, actor=actor)
        adjustment.status, adjustment.reversal = Adjustment.Status.REVERSED, row
        adjustment.save(update_fields=["status", "reversal"])


# --- autopay -------------------------------------------------------------------------------------------


def autopay_due_statements(*, today: dt.date | None = None) -> list[int]:
    """Statements of autopay accounts that have fallen due, still owe something and have no autopay attempt
    yet (the daily beat job charges each once)."""
    today = today or timezone.localdate()
    return list(
        Statement.objects.filter(
            account__billing_profile__autopay=True,
            account__status=Account.Status.ACTIVE,
            status__in=OPEN_STATUSES,
            due_date__lte=today,
            autopay_attempt__isnull=True,
        )
        .order_by("due_date", "id")
        .values_list("pk", flat=True)[:5000]
    )


def _autopay_amount(statement: Statement) -> Decimal:
    """What autopay takes: what the statement still owes, less any amount held by an open dispute."""
    owed = statement.ledger_amount - _allocated([statement.pk]).get(statement.pk, Decimal(0))
    return max(owed - statement.disputed_amount, Decimal(0))


def _autopay_open(statement_id: int) -> AutopayAttempt | None:
    """Record the attempt before the gateway is called (its own transaction), so that whatever happens next
    the statement is never charged again: the unique statement makes a second attempt impossible."""
    with transaction.atomic():
        statement = (
            Statement.objects.select_for_update(of=("self",))
            .select_related("account")
            .filter(pk=statement_id)
            .first()
        )
        if statement is None or AutopayAttempt.objects.filter(statement=statement).exists():
            return None
        if statement.status not in OPEN_STATUSES:
            return None  # paid (or reversed) since it was listed
        amount = _autopay_amount(statement)
        if amount <= 0:
            return None
        method = (
            PaymentMethod.objects.filter(account=statement.account, is_default=True, removed_at__isnull=True)
            .exclude(kind=PaymentMethod.Kind.OTHER)
            .first()
        )
        return AutopayAttempt.objects.create(
            statement=statement,
            account=statement.account,
            method=method,
            amount=amount,
            currency=statement.currency,
            idempotency_key=f"autopay:{statement.pk}",
            status=AutopayAttempt.Status.PENDING if method else AutopayAttempt.Status.NO_METHOD,
            message="" if method else "The account has no default card or bank account.",
            resolved_at=None if method else timezone.now(),
        )


def _autopay_settle(attempt: AutopayAttempt, result: ChargeResult) -> str:
    with transaction.atomic():
        attempt = (
            AutopayAttempt.objects.select_for_update(of=("self",))
            .select_related("statement", "account", "method")
            .get(pk=attempt.pk)
        )
        if attempt.status not in (AutopayAttempt.Status.PENDING, AutopayAttempt.Status.UNKNOWN):
            return attempt.status
        attempt.processor_reference = result.processor_reference[:200]
        attempt.message = result.message[:300]
        if result.outcome == ChargeOutcome.SUCCEEDED:
            payment, _ = payment_post(
                account=attempt.account,
                amount=attempt.amount,
                currency=attempt.currency,
                idempotency_key=attempt.idempotency_key,
                method=attempt.method,
                statement=attempt.statement,
                reference=f"Autopay {result.processor_reference}"[:100],
                channel=Payment.Channel.AUTOPAY,
                actor="task:payments.run_autopay",
            )
            attempt.payment, attempt.status = payment, AutopayAttempt.Status.SUCCEEDED
        elif result.outcome == ChargeOutcome.DECLINED:
            attempt.status = AutopayAttempt.Status.DECLINED
        else:
            attempt.status = AutopayAttempt.Status.UNKNOWN
        if attempt.status != AutopayAttempt.Status.UNKNOWN:
            attempt.resolved_at = timezone.now()
        attempt.save()
        audit_record(
            actor="task:payments.run_autopay",
            action=f"autopay.{attempt.status}",
            obj=attempt,
            after={"amount": str(attempt.amount), "message": attempt.message},
            account_id=attempt.account_id,
        )
        return attempt.status


def autopay_charge(*, statement_id: int) -> str:
    """Charge one due statement through the gateway (see the module's autopay notes). Returns the outcome."""
    attempt = _autopay_open(statement_id)
    if attempt is None:
        return "skipped"
    if attempt.status == AutopayAttempt.Status.NO_METHOD:
        return attempt.status
    try:
        result = gateway().charge(
            token=attempt.method.token,
            amount=attempt.amount,
            currency=attempt.currency,
            idempotency_key=attempt.idempotency_key,
        )
    except GatewayTimeout as exc:
        result = ChargeResult(ChargeOutcome.UNKNOWN, message=str(exc))
    return _autopay_settle(attempt, result)


def autopay_reconcile(*, older_than: dt.timedelta = dt.timedelta(minutes=5)) -> dict[str, int]:
    """Resolve attempts the gateway left unknown (and pending ones whose worker died after calling it) by
    asking the gateway what became of the charge with that idempotency key: never by charging again."""
    counts: dict[str, int] = {}
    stale = timezone.now() - older_than
    for attempt in AutopayAttempt.objects.filter(
        status__in=[AutopayAttempt.Status.UNKNOWN, AutopayAttempt.Status.PENDING], created_at__lte=stale
    ).order_by("id")[:1000]:
        result = gateway().lookup(idempotency_key=attempt.idempotency_key)
        if result.outcome == ChargeOutcome.UNKNOWN and attempt.status == AutopayAttempt.Status.UNKNOWN:
            counts["still unknown"] = counts.get("still unknown", 0) + 1
            continue
        if result.outcome == ChargeOutcome.UNKNOWN:
            continue  # pending and the gateway never heard of it yet: look again next time
        outcome = _autopay_settle(attempt, result)
        counts[outcome] = counts.get(outcome, 0) + 1
    return counts
