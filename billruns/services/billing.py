"""Bill creation for one bill unit ("bill now", source 004's real-time billing) and its preview.

``bill_create`` rates every subscription the bill carries (each in its own transaction, so a segment in error
is kept with its error), then, in one transaction, assembles one Statement for the bill unit (the account, or
its paying parent with the non-paying children's segments on it): it sweeps the ledger rows posted since the
last bill, computes previous balance, payments, adjustments, new charges, taxes, total due and due date, posts
the bill to the ledger, freezes the segments on it and attaches the bill messages. ``bill_preview`` does the
same inside a transaction it rolls back, so it shows exactly that bill and stores nothing.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from accounts.models import Account, Biller
from accounts.selectors import paying_account
from billing_mgmt.audit import audit_record, snapshot
from billing_mgmt.errors import ApplicationError
from billing_mgmt.numbering import next_number
from invoicing.models import BillMessage, StatementMessage
from statements.models import BalanceType, Channel, FinancialTransaction, Statement, StatementLine
from statements.services import transaction_post
from statements.services.ingest import STATEMENT_SERIES, STATEMENT_SERIES_SPEC

from ..models import BillSegment, CalculationLine, Subscription
from ..selectors import bill_unit_subscriptions
from .rating import subscription_rate

ENGINE_BILLER_CODE = "engine"

# A calculation line's kind -> the statement line type it prints as.
LINE_TYPES = {
    CalculationLine.Kind.RECURRING: StatementLine.Type.RECURRING,
    CalculationLine.Kind.USAGE: StatementLine.Type.USAGE,
    CalculationLine.Kind.ALLOWANCE: StatementLine.Type.USAGE,
    CalculationLine.Kind.PRIOR: StatementLine.Type.USAGE,
    CalculationLine.Kind.ONE_TIME: StatementLine.Type.ONE_TIME,
    CalculationLine.Kind.CREDIT: StatementLine.Type.RECURRING,
    CalculationLine.Kind.DISCOUNT: StatementLine.Type.DISCOUNT,
    CalculationLine.Kind.TAX: StatementLine.Type.TAX,
}


def engine_biller() -> Biller:
    """The biller that this product's own bills belong to: the first active internal biller (made once)."""
    biller = Biller.objects.filter(kind=Biller.Kind.INTERNAL, active=True).order_by("pk").first()
    if biller is None:
        biller, _ = Biller.objects.get_or_create(
            code=ENGINE_BILLER_CODE,
            defaults={"name": "Billing engine (this product)", "kind": Biller.Kind.INTERNAL},
        )
    return biller


@dataclass
class SegmentError:
    subscription_id: int
    service_identifier: str
    period_start: dt.date
    period_end: dt.date
    code: str
    message: str


@dataclass
class BillResult:
    """What a bill (or its preview) came to. ``statement`` is unsaved-looking data for a preview."""

    statement: Statement | None
    preview: bool
    account: Account
    currency: str
    statement_date: dt.date
    due_date: dt.date
    period_start: dt.date
    period_end: dt.date
    previous_balance: Decimal
    payments: Decimal
    adjustments: Decimal
    new_charges: Decimal
    taxes: Decimal
    total_due: Decimal
    segments: list[dict[str, Any]] = field(default_factory=list)
    swept: list[dict[str, Any]] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)
    errors: list[SegmentError] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "preview": self.preview,
            "statement_id": self.statement.pk if self.statement and not self.preview else None,
            "number": self.statement.number if self.statement and not self.preview else None,
            "account": self.account.number,
            "currency": self.currency,
            "statement_date": self.statement_date,
            "due_date": self.due_date,
            "period_start": self.period_start,
            "period_end": self.period_end,
            "previous_balance": self.previous_balance,
            "payments": self.payments,
            "adjustments": self.adjustments,
            "new_charges": self.new_charges,
            "taxes": self.taxes,
            "total_due": self.total_due,
            "segments": self.segments,
            "swept_transactions": self.swept,
            "messages": self.messages,
            "errors": [e.__dict__ for e in self.errors],
        }


class _Rollback(Exception):
    pass


def _errors(subscriptions: list[Subscription]) -> list[SegmentError]:
    segments = BillSegment.objects.filter(
        subscription__in=subscriptions, status=BillSegment.Status.ERROR
    ).select_related("subscription")
    return [
        SegmentError(
            s.subscription_id,
            s.subscription.service_identifier,
            s.period_start,
            s.period_end,
            s.error_code,
            s.error_message,
        )
        for s in segments.order_by("subscription__processing_sequence", "subscription_id", "period_start")
    ]


def _rate_all(subscriptions: list[Subscription], bill_as_of: dt.date, currency: str) -> list[SegmentError]:
    """Rate each subscription in processing-sequence order, each in its own transaction."""
    problems = []
    for subscription in subscriptions:
        if subscription.currency != currency:
            problems.append(
                SegmentError(
                    subscription.pk,
                    subscription.service_identifier,
                    subscription.start_date,
                    subscription.start_date,
                    "currency_mismatch",
                    f"The plan is in {subscription.currency}; the bill is in {currency}.",
                )
            )
            continue
        subscription_rate(subscription=subscription, bill_as_of=bill_as_of)
    return problems


def _swept_rows(unit: Account, biller: Biller, bill_date: dt.date) -> list[FinancialTransaction]:
    """Ledger rows this product holds for the bill unit that no bill has shown yet: payments, adjustments,
    corrections entered here or by the engine (rows of external billers belong on their own statements)."""
    return list(
        FinancialTransaction.objects.select_for_update(of=("self",))
        .filter(
            account=unit,
            balance_type=BalanceType.RECEIVABLE,
            statement__isnull=True,
            effective_date__lte=bill_date,
        )
        .filter(Q(biller__isnull=True) | Q(biller=biller))
        .select_related("corrects")
        .order_by("effective_date", "id")
    )


def _is_payment(row: FinancialTransaction) -> bool:
    if row.kind == FinancialTransaction.Kind.PAYMENT:
        return True
    return row.kind == FinancialTransaction.Kind.REVERSAL and (
        row.corrects is not None and row.corrects.kind == FinancialTransaction.Kind.PAYMENT
    )


def _messages(unit: Account, bill_date: dt.date) -> list[BillMessage]:
    profile = unit.billing_profile
    return list(
        BillMessage.objects.filter(active=True, valid_from__lte=bill_date)
        .filter(Q(valid_to__isnull=True) | Q(valid_to__gte=bill_date))
        .filter(account_type__in=["", unit.type], ar_classification__in=["", profile.ar_classification])
        .order_by("priority", "code")
    )


def _statement_lines(statement: Statement, segments: list[BillSegment]) -> None:
    lines = list(
        CalculationLine.objects.filter(segment__in=segments)
        .select_related("segment__subscription__price_plan__product")
        .order_by(
            "segment__subscription__processing_sequence",
            "segment__subscription_id",
            "segment__period_start",
            "position",
        )
    )
    statement_lines = []
    for position, line in enumerate(lines, start=1):
        subscription = line.segment.subscription
        description = line.description
        if line.kind == CalculationLine.Kind.TAX and line.included:
            description = f"{description}: not added, already in the prices"
        statement_lines.append(
            StatementLine(
                statement=statement,
                position=position,
                line_type=LINE_TYPES[line.kind],
                product=subscription.price_plan.product.name,
                service_identifier=subscription.service_identifier,
                description=description[:300],
                quantity=line.quantity,
                unit=line.unit,
                unit_price=line.rate
                if line.kind not in (CalculationLine.Kind.DISCOUNT, CalculationLine.Kind.TAX)
                else None,
                amount=line.amount,
                period_start=line.period_start,
                period_end=line.period_end,
            )
        )
    created = StatementLine.objects.bulk_create(statement_lines)
    for line, statement_line in zip(lines, created, strict=True):
        line.statement_line = statement_line
    CalculationLine.objects.bulk_update(lines, ["statement_line"], batch_size=500)


def _segment_dicts(segments: list[BillSegment]) -> list[dict[str, Any]]:
    rows = (
        BillSegment.objects.filter(pk__in=[s.pk for s in segments])
        .select_related("subscription__price_plan")
        .prefetch_related("lines")
        .order_by("subscription__processing_sequence", "subscription_id", "period_start")
    )
    return [
        {
            "id": s.pk,
            "subscription_id": s.subscription_id,
            "service_identifier": s.subscription.service_identifier,
            "price_plan": s.subscription.price_plan.name,
            "period_start": s.period_start,
            "period_end": s.period_end,
            "charges": s.charges,
            "discounts": s.discounts,
            "taxes": s.taxes,
            "taxes_included": s.taxes_included,
            "total": s.total,
            "lines": [
                {
                    "kind": ln.kind,
                    "description": ln.description,
                    "quantity": ln.quantity,
                    "unit": ln.unit,
                    "rate": ln.rate,
                    "proration_factor": ln.proration_factor,
                    "base": ln.base,
                    "amount": ln.amount,
                    "included": ln.included,
                    "period_start": ln.period_start,
                    "period_end": ln.period_end,
                }
                for ln in s.lines.all()
            ],
        }
        for s in rows
    ]


def _assemble(
    *, unit: Account, bill_date: dt.date, subscriptions: list[Subscription], actor: Any, preview: bool
) -> tuple[BillResult, list[BillSegment]]:
    unit = Account.objects.select_for_update(of=("self",)).select_related("billing_profile").get(pk=unit.pk)
    profile = unit.billing_profile
    currency = profile.currency
    biller = engine_biller()
    segments = list(
        BillSegment.objects.select_for_update()
        .filter(subscription__in=subscriptions, status=BillSegment.Status.RATED, statement__isnull=True)
        .order_by("period_start", "id")
    )
    swept = _swept_rows(unit, biller, bill_date)
    if not segments and not swept:
        raise ApplicationError(
            "There is nothing to bill: no rated charges and no payments or adjustments since the last bill.",
            code="nothing_to_bill",
        )
    last = (
        Statement.objects.filter(account=unit, biller=biller)
        .order_by("-statement_date", "-id")
        .only("total_due")
        .first()
    )
    previous_balance = last.total_due if last else Decimal(0)
    payments = -sum((row.amount for row in swept if _is_payment(row)), Decimal(0))
    adjustments = sum((row.amount for row in swept if not _is_payment(row)), Decimal(0))
    new_charges = sum((s.new_charges for s in segments), Decimal(0))
    taxes = sum((s.taxes for s in segments), Decimal(0))
    total_due = previous_balance - payments + adjustments + new_charges + taxes
    period_start = min((s.period_start for s in segments), default=bill_date)
    period_end = max((s.period_end for s in segments), default=bill_date)
    due_date = bill_date + dt.timedelta(days=profile.payment_terms_days)
    amounts = {
        "previous_balance": previous_balance,
        "payments": payments,
        "adjustments": adjustments,
        "new_charges": new_charges,
        "taxes": taxes,
        "total_due": total_due,
    }
    number = "PREVIEW" if preview else next_number(STATEMENT_SERIES, STATEMENT_SERIES_SPEC)
    statement = Statement.objects.create(
        number=number,
        account=unit,
        biller=biller,
        external_id=number,
        statement_date=bill_date,
        period_start=period_start,
        period_end=period_end,
        due_date=due_date,
        currency=currency,
        status=Statement.Status.OPEN if total_due > 0 else Statement.Status.PAID,
        channel=Channel.ENGINE,
        content_hash=hashlib.sha256(
            json.dumps({k: str(v) for k, v in amounts.items()} | {"number": number}, sort_keys=True).encode()
        ).hexdigest(),
        received_at=timezone.now(),
        **amounts,
    )
    _statement_lines(statement, segments)
    if new_charges + taxes:
        transaction_post(
            account=unit,
            kind=FinancialTransaction.Kind.BILL,
            amount=new_charges + taxes,
            currency=currency,
            effective_date=bill_date,
            biller=biller,
            idempotency_key=f"bill:{statement.pk}",
            description=f"Bill {statement.number}",
            statement=statement,
            actor=actor,
        )
    FinancialTransaction.objects.filter(pk__in=[row.pk for row in swept]).update(statement=statement)
    now = timezone.now()
    BillSegment.objects.filter(pk__in=[s.pk for s in segments]).update(
        status=BillSegment.Status.BILLED, statement=statement, frozen_at=now
    )
    billed_through: dict[int, dt.date] = {}
    for s in segments:
        billed_through[s.subscription_id] = max(
            s.period_end, billed_through.get(s.subscription_id, s.period_end)
        )
    for subscription_id, day in billed_through.items():
        Subscription.objects.filter(pk=subscription_id).filter(
            Q(billed_through__isnull=True) | Q(billed_through__lt=day)
        ).update(billed_through=day)
    messages = _messages(unit, bill_date)
    StatementMessage.objects.bulk_create(
        StatementMessage(statement=statement, message=m, position=i, text=m.text)
        for i, m in enumerate(messages, 1)
    )
    if not preview:
        audit_record(
            actor=actor,
            action="bill.create",
            obj=statement,
            after=snapshot(statement, ["number", "statement_date", "due_date", *amounts]),
            account_id=unit.pk,
        )
    result = BillResult(
        statement=statement,
        preview=preview,
        account=unit,
        currency=currency,
        statement_date=bill_date,
        due_date=due_date,
        period_start=period_start,
        period_end=period_end,
        segments=_segment_dicts(segments),
        swept=[
            {
                "id": row.pk,
                "kind": row.kind,
                "effective_date": row.effective_date,
                "amount": row.amount,
                "description": row.description,
            }
            for row in swept
        ],
        messages=[m.text for m in messages],
        **amounts,
    )
    return result, segments


def _bill(
    *, account: Account, bill_date: dt.date | None, bill_as_of: dt.date | None, actor: Any, preview: bool
):
    bill_date = bill_date or timezone.localdate()
    bill_as_of = bill_as_of or bill_date
    unit = paying_account(account=account)
    profile = getattr(unit, "billing_profile", None)
    if profile is None:
        raise ApplicationError(f"Account {unit.number} has no billing profile.", code="no_billing_profile")
    subscriptions = bill_unit_subscriptions(unit=unit)
    problems = _rate_all(subscriptions, bill_as_of, profile.currency)
    try:
        with transaction.atomic():
            result, _ = _assemble(
                unit=unit, bill_date=bill_date, subscriptions=subscriptions, actor=actor, preview=preview
            )
            result.errors = problems + _errors(subscriptions)
    except ApplicationError as exc:
        errors = problems + _errors(subscriptions)
        if exc.code != "nothing_to_bill" or not errors:
            raise
        raise ApplicationError(
            f"There is nothing to bill: {len(errors)} subscription period(s) could not be rated.",
            code="nothing_to_bill",
            fields={
                f"subscription_{e.subscription_id}": [f"{e.period_start} – {e.period_end}: {e.message}"]
                for e in errors
            },
        ) from None
    if preview:
        raise _Rollback(result)
    return result


def bill_create(
    *,
    account: Account,
    bill_date: dt.date | None = None,
    bill_as_of: dt.date | None = None,
    actor: Any = None,
) -> BillResult:
    """Bill the account's bill unit now. Segments in error are left out (listed on the result) and billed
    once they are fixed; a second call finds nothing new to bill (``nothing_to_bill``)."""
    return _bill(account=account, bill_date=bill_date, bill_as_of=bill_as_of, actor=actor, preview=False)


def bill_preview(
    *,
    account: Account,
    bill_date: dt.date | None = None,
    bill_as_of: dt.date | None = None,
    actor: Any = None,
) -> BillResult:
    """The bill ``bill_create`` would make now, computed the same way, with nothing stored."""
    try:
        with transaction.atomic():
            _bill(account=account, bill_date=bill_date, bill_as_of=bill_as_of, actor=actor, preview=True)
    except _Rollback as done:
        return done.args[0]
    raise AssertionError("unreachable")  # pragma: no cover
