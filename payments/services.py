"""Writes of the payments app: payment methods, payments with their allocation to statements and their
reversal, and adjustments with approval limits (maker-checker).

Each service is one transaction that locks the account's bill unit first (so two entries for one account
never interleave), validates, posts its ledger row through statements.services.transaction_post (which moves
the cached balance in the same transaction), and writes an audit record. Entries are idempotent by their
idempotency key: a repeated form submission or API call returns the first entry, never a second one.
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from accounts.models import Account
from accounts.selectors import paying_account
from billing_mgmt.audit import audit_record, snapshot
from billing_mgmt.errors import ApplicationError, Conflict
from billing_mgmt.money import is_quantized, to_decimal
from statements.models import AccountBalance, BalanceType, FinancialTransaction, Statement, StatementLine
from statements.services import transaction_post, transaction_reverse

from .models import (
    Adjustment,
    AdjustmentLimit,
    AdjustmentReason,
    Payment,
    PaymentAllocation,
    PaymentMethod,
    Refund,
    WriteOff,
)

# Statements a payment may settle.
OPEN_STATUSES = (Statement.Status.OPEN, Statement.Status.PARTIALLY_PAID, Statement.Status.OVERDUE)

_DIGIT_RUN = re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)")


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
    """13 to 19 digits (spaces or dashes allowed between them) that pass the Luhn check: a full card number
    (PAN). Such input is refused everywhere: this product never holds card numbers."""
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
    unit = _locked_unit(account)
    has_default = PaymentMethod.objects.filter(account=account, is_default=True, removed_at__isnull=True)
    if make_default or not has_default.exists():
        has_default.update(is_default=False)
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
        created_by=actor if getattr(actor, "is_authenticated", False) else None,
    )
    audit_record(
        actor=actor,
        action="payment_method.add",
        obj=method,
        after=snapshot(method, ["kind", "brand", "last4", "expiry_month", "expiry_year", "is_default"]),
        account_id=unit.pk,
    )
    return method


@transaction.atomic
def payment_method_set_default(*, method: PaymentMethod, actor: Any = None) -> PaymentMethod:
    method = PaymentMethod.objects.select_for_update().get(pk=method.pk)
    if method.removed_at is not None:
        raise ApplicationError("A removed payment method cannot be the default.", code="method_removed")
    PaymentMethod.objects.filter(account_id=method.account_id, is_default=True).exclude(pk=method.pk).update(
        is_default=False
    )
    method.is_default = True
    method.save(update_fields=["is_default"])
    audit_record(actor=actor, action="payment_method.set_default", obj=method, account_id=method.account_id)
    return method


@transaction.atomic
def payment_method_remove(*, method: PaymentMethod, actor: Any = None) -> PaymentMethod:
    """Take a method out of use; it stays for the history of what it paid."""
    method = PaymentMethod.objects.select_for_update().get(pk=method.pk)
    if method.removed_at is not None:
        return method
    method.removed_at = timezone.now()
    method.is_default = False
    method.save(update_fields=["removed_at", "is_default"])
    audit_record(actor=actor, action="payment_method.remove", obj=method, account_id=method.account_id)
    return method


# --- payments ------------------------------------------------------------------------------------------


def _allocated(statement_ids: list[int]) -> dict[int, Decimal]:
    return dict(
        PaymentAllocation.objects.filter(statement_id__in=statement_ids, reversed=False)
        .values("statement_id")
        .annotate(total=Sum("amount"))
        .values_list("statement_id", "total")
    )


def _settle(statements: list[Statement]) -> None:
    """Each statement's status from what is allocated to it: paid, partially paid, or open (overdue once its
    due date has passed)."""
    allocated = _allocated([s.pk for s in statements])
    today = timezone.localdate()
    for statement in statements:
        paid = allocated.get(statement.pk, Decimal(0))
        owed = statement.ledger_amount
        if owed > 0 and paid >= owed:
            status = Statement.Status.PAID
        elif paid > 0:
            status = Statement.Status.PARTIALLY_PAID
        else:
            status = Statement.Status.OVERDUE if statement.due_date < today else Statement.Status.OPEN
        if status != statement.status:
            statement.status = status
            statement.save(update_fields=["status"])


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
    row, _ = transaction_post(
        account=unit,
        kind=FinancialTransaction.Kind.PAYMENT,
        amount=-value,
        currency=currency,
        effective_date=payment_date,
        idempotency_key=f"payment:{idempotency_key}",
        description=f"Payment{f' {reference}' if reference else ''}"[:300],
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
        # A biller's API client is authenticated but not a user: its payment has no created_by.
        created_by=actor
        if getattr(actor, "is_authenticated", False) and not getattr(actor, "is_api_client", False)
        else None,
    )
    PaymentAllocation.objects.bulk_create(
        PaymentAllocation(payment=payment, statement=s, amount=take) for s, take in plan
    )
    _settle([s for s, _ in plan])
    audit_record(
        actor=actor,
        action="payment.post",
        obj=payment,
        after=snapshot(payment, ["amount", "currency", "payment_date", "method", "reference", "unallocated"])
        | {"allocations": {s.number: str(take) for s, take in plan}},
        account_id=unit.pk,
    )
    return payment, True


@transaction.atomic
def payment_reverse(*, payment: Payment, reason: str, actor: Any = None) -> Payment:
    """Reverse a payment (it bounced, it was entered by mistake): the opposite ledger row, its allocations
    taken back and the statements it settled open again. A payment is reversed once."""
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
    payment.status = Payment.Status.REVERSED
    payment.reversal = row
    payment.reversal_reason = reason.strip()[:300]
    payment.save(update_fields=["status", "reversal", "reversal_reason"])
    _settle(statements)
    audit_record(
        actor=actor,
        action="payment.reverse",
        obj=payment,
        after={"status": payment.status, "reason": payment.reversal_reason},
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


def _post_adjustment(adjustment: Adjustment, actor: Any) -> None:
    row, _ = transaction_post(
        account=adjustment.account,
        kind=FinancialTransaction.Kind.ADJUSTMENT,
        amount=adjustment.signed_amount,
        currency=adjustment.currency,
        effective_date=timezone.localdate(),
        idempotency_key=f"adjustment:{adjustment.pk}",
        description=f"{adjustment.reason.name}{f': {adjustment.note}' if adjustment.note else ''}"[:300],
        actor=actor,
    )
    adjustment.transaction = row
    adjustment.status = Adjustment.Status.POSTED


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
    existing = Adjustment.objects.filter(idempotency_key=idempotency_key).first()
    if existing is not None:
        if (existing.account_id, existing.amount, existing.direction) != (unit.pk, value, direction):
            raise Conflict(
                "This idempotency key was used for a different adjustment.", code="idempotency_key_reused"
            )
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
    existing = Refund.objects.filter(idempotency_key=idempotency_key).first()
    if existing is not None:
        if (existing.account_id, existing.amount) != (unit.pk, value):
            raise Conflict(
                "This idempotency key was used for a different refund.", code="idempotency_key_reused"
            )
        return existing, False
    if method is not None and (method.account_id not in (account.pk, unit.pk) or not method.is_usable):
        raise ApplicationError(
            "That payment method cannot be used.", fields={"method": ["Unknown or removed."]}
        )
    credit = -_receivable(unit)
    if value > credit:
        raise ApplicationError(
            f"The account's credit is {max(credit, Decimal(0))} {currency}: a refund cannot be more.",
            code="exceeds_credit",
            fields={"amount": [f"At most {max(credit, Decimal(0))}."]},
        )
    row, _ = transaction_post(
        account=unit,
        kind=FinancialTransaction.Kind.REFUND,
        amount=value,
        currency=currency,
        idempotency_key=f"refund:{idempotency_key}",
        description=f"Refund: {reason.strip()}"[:300],
        actor=actor,
    )
    refund = Refund.objects.create(
        account=unit,
        amount=value,
        currency=currency,
        method=method,
        reason=reason.strip()[:300],
        transaction=row,
        idempotency_key=idempotency_key,
        created_by=actor if getattr(actor, "is_authenticated", False) else None,
    )
    audit_record(
        actor=actor,
        action="refund.post",
        obj=refund,
        after=snapshot(refund, ["amount", "currency", "reason"]),
        account_id=unit.pk,
    )
    return refund, True


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
    unit = _locked_unit(account)
    value = _valid_amount(amount, currency, unit)
    existing = WriteOff.objects.filter(idempotency_key=idempotency_key).first()
    if existing is not None:
        if (existing.account_id, existing.amount) != (unit.pk, value):
            raise Conflict(
                "This idempotency key was used for a different write-off.", code="idempotency_key_reused"
            )
        return existing, False
    owed = _receivable(unit)
    if value > owed:
        raise ApplicationError(
            f"The account owes {max(owed, Decimal(0))} {currency}: a write-off cannot be more.",
            code="exceeds_balance",
            fields={"amount": [f"At most {max(owed, Decimal(0))}."]},
        )
    row, _ = transaction_post(
        account=unit,
        kind=FinancialTransaction.Kind.WRITE_OFF,
        amount=-value,
        currency=currency,
        idempotency_key=f"write-off:{idempotency_key}",
        description=f"Write-off: {reason.strip()}"[:300],
        actor=actor,
    )
    write_off = WriteOff.objects.create(
        account=unit,
        amount=value,
        currency=currency,
        reason=reason.strip()[:300],
        transaction=row,
        idempotency_key=idempotency_key,
        created_by=actor,
    )
    audit_record(
        actor=actor,
        action="write_off.post",
        obj=write_off,
        after=snapshot(write_off, ["amount", "currency", "reason"]),
        account_id=unit.pk,
    )
    return write_off, True
