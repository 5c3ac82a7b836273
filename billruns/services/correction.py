"""Corrective bills (source 003: "corrective invoices for corrective bills"): reversing a bill of this
product's engine.

A reversing bill credits everything the original bill charged: its lines are the original's, negated, and it
takes its place in the account's chain of bills like any bill (its previous balance is the last bill's total
due, it sweeps the payments and adjustments posted since, and the next bill starts from its total). The
ledger gets one REVERSAL row that corrects the original's BILL row (the ledger stays append-only). Its
invoice is a credit note that refers to the original's invoice (invoicing issues it, as for every bill).

The original is settled by its reversing bill (status paid: it takes no payment, autopay and the overdue job
leave it alone). The original's bill segments stay billed: a reversed period is not billed again by the
engine. Re-billing a corrected period (an adjusting bill) is not part of this version.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from accounts.models import Account
from billing_mgmt.audit import audit_record, snapshot
from billing_mgmt.bulk import set_columns
from billing_mgmt.errors import ApplicationError, Conflict
from billing_mgmt.numbering import next_number
from statements.models import Channel, FinancialTransaction, Statement, StatementLine
from statements.services import transaction_post
from statements.services.ingest import STATEMENT_SERIES, STATEMENT_SERIES_SPEC

from .assembly import (
    AMOUNT_FIELDS,
    _content_hash,
    _previous_balances,
    bill_amounts,
    engine_biller,
    unswept_rows,
)
from .billing import invoice_soon


@transaction.atomic
def bill_reverse(*, statement: Statement | int, reason: str, actor: Any = None) -> Statement:
    """Reverse an engine bill with a reversing bill (see the module docstring). Refused, with nothing
    changed: an external biller's statement (``not_engine_bill``), a corrective bill (``is_correction``), a
    bill already reversed (``already_reversed``, 409), a bill an approved dispute credited (``bill_credited``,
    409), an empty reason."""
    reason = (reason or "").strip()
    if not reason:
        raise ApplicationError(
            "Say why the bill is reversed.", code="reason_required", fields={"reason": ["Required."]}
        )
    biller = engine_biller()
    statement_id = statement.pk if isinstance(statement, Statement) else statement
    original = Statement.objects.select_related("account").filter(pk=statement_id).first()
    if original is None or original.biller_id != biller.pk:
        raise ApplicationError(
            "Only bills of this product's engine can be reversed here (an external biller corrects its own).",
            code="not_engine_bill",
        )
    # The bill unit first (the lock every bill of the account takes), then the bill.
    unit = (
        Account.objects.select_for_update(of=("self",))
        .select_related("billing_profile")
        .get(pk=original.account_id)
    )
    original = Statement.objects.select_for_update(of=("self",)).get(pk=original.pk)
    if original.corrects_id is not None:
        raise ApplicationError("A corrective bill cannot itself be reversed.", code="is_correction")
    if Statement.objects.filter(corrects=original).exists():
        raise Conflict(f"Bill {original.number} is already reversed.", code="already_reversed")
    # A dispute of the bill that was approved credited part of its charges already: a reversal would credit
    # them twice (the ledger's dispute-credit rows, through the adjustment that says which bill they credit).
    disputed = FinancialTransaction.objects.filter(
        kind=FinancialTransaction.Kind.DISPUTE_CREDIT, adjustment_entry__statement=original
    ).aggregate(total=Sum("amount"))["total"]
    if disputed:
        raise Conflict(
            f"Bill {original.number} was credited {-disputed:.2f} by an approved dispute: a reversal would "
            "credit those charges twice. Credit the rest with an adjustment.",
            code="bill_credited",
        )
    bill_row = FinancialTransaction.objects.filter(
        statement=original, kind=FinancialTransaction.Kind.BILL
    ).first()
    today = timezone.localdate()
    swept = list(
        unswept_rows(unit_ids=[unit.pk], biller=biller, bill_date=today)
        .select_for_update(of=("self",))
        .select_related("corrects")
        .order_by("effective_date", "id")
    )
    amounts = bill_amounts(
        previous_balance=_previous_balances([unit.pk], biller).get(unit.pk, Decimal(0)),
        swept=swept,
        new_charges=-original.new_charges,
        taxes=-original.taxes,
    )
    number = next_number(STATEMENT_SERIES, STATEMENT_SERIES_SPEC)
    reversal = Statement.objects.create(
        number=number,
        account=unit,
        biller=biller,
        external_id=number,
        statement_date=today,
        period_start=original.period_start,
        period_end=original.period_end,
        due_date=today,
        currency=original.currency,
        status=Statement.Status.OPEN if amounts["total_due"] > 0 else Statement.Status.PAID,
        channel=Channel.ENGINE,
        content_hash=_content_hash(amounts, number),
        received_at=timezone.now(),
        corrects=original,
        **amounts,
    )
    StatementLine.objects.bulk_create(
        StatementLine(
            statement=reversal,
            position=line.position,
            line_type=line.line_type,
            product=line.product,
            service_identifier=line.service_identifier,
            service_type=line.service_type,
            account_id=line.account_id,
            tax_included=line.tax_included,
            description=f"Reversal: {line.description}"[:300],
            quantity=line.quantity,
            unit=line.unit,
            unit_price=line.unit_price,
            amount=-line.amount,
            tax=-line.tax,
            period_start=line.period_start,
            period_end=line.period_end,
        )
        for line in original.lines.order_by("position")
    )
    if original.ledger_amount:
        transaction_post(
            account=unit,
            kind=FinancialTransaction.Kind.REVERSAL,
            amount=-original.ledger_amount,
            currency=original.currency,
            effective_date=today,
            biller=biller,
            idempotency_key=f"bill-reversal:{original.pk}",
            corrects=bill_row,
            description=f"Reversal of bill {original.number}: {reason}"[:300],
            statement=reversal,
            actor=actor,
        )
    set_columns(FinancialTransaction, [r.pk for r in swept], {"statement": [reversal.pk] * len(swept)})
    # The reversing bill settles the original: no longer owed, it takes no payment, autopay never charges it
    # and it never becomes overdue (payments keeps it paid when a payment allocated to it is reversed).
    if original.status != Statement.Status.PAID:
        was = original.status
        original.status = Statement.Status.PAID
        original.save(update_fields=["status"])
        audit_record(
            actor=actor, action="statement.status", obj=original, before={"status": was},
            after={"status": original.status, "cause": f"reversed by {number}"}, account_id=unit.pk,
        )  # fmt: skip
    audit_record(
        actor=actor,
        action="bill.reverse",
        obj=reversal,
        after=snapshot(reversal, ["number", "statement_date", "corrects", *AMOUNT_FIELDS])
        | {"reason": reason},
        account_id=unit.pk,
    )
    invoice_soon(reversal.pk)
    return reversal
