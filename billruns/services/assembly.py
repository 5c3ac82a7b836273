"""Assembling and posting bills (source 004 "bill completion"), for one bill unit or many at once.

``bills_assemble`` makes one Statement of the engine's biller per bill unit that has something to bill, in
the caller's transaction and in a fixed number of queries whatever the number of units (a billing run
assembles hundreds per unit of work; bill now assembles one). For each unit it:

1. locks the unit's account row (two runs, or a run and bill now, never bill one unit at the same time) and
   its rated, unbilled segments and unswept ledger rows;
2. sweeps the ledger rows this product holds that no bill has shown yet (payments, adjustments,
   corrections; rows of external billers belong on their own statements);
3. computes previous balance, payments, adjustments, new charges, taxes, total due and the due date;
4. posts ``new charges + taxes`` as one BILL row, prints the calculation lines as statement lines, freezes
   the segments on the statement, moves each subscription's ``billed_through`` and attaches the bill
   messages.

A segment is billed once: it is taken only while it has no statement, under a row lock.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.db import connection
from django.db.models import OuterRef, Q, Subquery
from django.utils import timezone

from accounts.models import Account, Biller
from billing_mgmt.audit import audit_records_bulk, snapshot
from billing_mgmt.bulk import insert_instances, row_by_row_plans, set_columns
from billing_mgmt.numbering import next_numbers
from invoicing.models import BillMessage, StatementMessage
from statements.models import (
    BalanceType,
    Channel,
    FinancialTransaction,
    Statement,
    StatementLine,
    UsageSummary,
)
from statements.services import LedgerEntry, transactions_post_bulk
from statements.services.ingest import STATEMENT_SERIES, STATEMENT_SERIES_SPEC

from ..models import (
    BillSegment,
    CalculationLine,
    PlanComponent,
    PricePlan,
    Product,
    SegmentUsage,
    Subscription,
    UsageType,
)

ENGINE_BILLER_CODE = "engine"
AMOUNT_FIELDS = ("previous_balance", "payments", "adjustments", "new_charges", "taxes", "total_due")

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
    segment_count: int = 0
    invoices: int = 0  # subscriptions with segments on the bill

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


def unswept_rows(*, unit_ids: list[int], biller: Biller, bill_date: dt.date):
    """The ledger rows of these bill units that the next bill sweeps: receivable, on no statement yet,
    dated by the bill date, and this product's (rows of external billers belong on their statements)."""
    return FinancialTransaction.objects.filter(
        account_id__in=unit_ids,
        balance_type=BalanceType.RECEIVABLE,
        statement__isnull=True,
        effective_date__lte=bill_date,
    ).filter(Q(biller__isnull=True) | Q(biller=biller))


def billed_through_advance(*, segments: list[BillSegment]) -> None:
    """Move each subscription's ``billed_through`` to the end of its latest segment (never back)."""
    through: dict[int, dt.date] = {}
    for s in segments:
        through[s.subscription_id] = max(s.period_end, through.get(s.subscription_id, s.period_end))
    set_columns(
        Subscription, list(through), {"billed_through": list(through.values())}, greatest=["billed_through"]
    )


def is_payment(row: FinancialTransaction) -> bool:
    if row.kind == FinancialTransaction.Kind.PAYMENT:
        return True
    return row.kind == FinancialTransaction.Kind.REVERSAL and (
        row.corrects is not None and row.corrects.kind == FinancialTransaction.Kind.PAYMENT
    )


def bill_amounts(
    *, previous_balance: Decimal, swept: list[FinancialTransaction], new_charges: Decimal, taxes: Decimal
) -> dict[str, Decimal]:
    """A bill's header amounts as the invoice prints them (source 003): the swept rows split into payments
    (positive: what was received) and adjustments (signed), and total due = previous balance - payments +
    adjustments + new charges + taxes."""
    payments = -sum((row.amount for row in swept if is_payment(row)), Decimal(0))
    adjustments = sum((row.amount for row in swept if not is_payment(row)), Decimal(0))
    return {
        "previous_balance": previous_balance,
        "payments": payments,
        "adjustments": adjustments,
        "new_charges": new_charges,
        "taxes": taxes,
        "total_due": previous_balance - payments + adjustments + new_charges + taxes,
    }


def _content_hash(amounts: dict[str, Decimal], number: str) -> str:
    content = {k: str(v) for k, v in amounts.items()} | {"number": number}
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def _previous_balances(unit_ids: list[int], biller: Biller) -> dict[int, Decimal]:
    """Each unit's last engine bill's total due (one query: the newest statement per unit)."""
    newest = Statement.objects.filter(account=OuterRef("account"), biller=biller).order_by(
        "-statement_date", "-id"
    )
    return dict(
        Statement.objects.filter(account_id__in=unit_ids, biller=biller, pk=Subquery(newest.values("pk")[:1]))
        .values_list("account_id", "total_due")
        .order_by()
    )


def _messages_for(messages: list[BillMessage], unit: Account, bill_date: dt.date) -> list[BillMessage]:
    profile = unit.billing_profile
    return [
        m
        for m in messages
        if m.valid_from <= bill_date
        and (m.valid_to is None or m.valid_to >= bill_date)
        and m.account_type in ("", unit.type)
        and m.ar_classification in ("", profile.ar_classification)
    ]


def _statement_lines(by_statement: dict[int, list[BillSegment]], statements: dict[int, Statement]) -> None:
    """Print each bill's calculation lines as its statement lines, each naming the calculation line it prints
    (``StatementLine.calculation_line_id``; the calculation line is never rewritten). On PostgreSQL one
    INSERT ... SELECT does it in the database (a run prints tens of thousands of lines per chunk): the lines
    of each bill are numbered in bill order (subscription processing sequence, subscription, period,
    position)."""
    pairs = [(s.pk, statements[unit].pk) for unit, segments in by_statement.items() for s in segments]
    if not pairs:
        return
    if connection.vendor != "postgresql":
        _statement_lines_python(by_statement, statements)
        return
    line_type = " ".join(f"WHEN '{kind}' THEN '{LINE_TYPES[kind]}'" for kind in CalculationLine.Kind)
    quote = connection.ops.quote_name
    statement_line = quote(StatementLine._meta.db_table)
    sql = f"""
        INSERT INTO {statement_line} (
            statement_id, position, line_type, product, service_identifier, service_type, account_id,
            tax_included, description, quantity, unit, unit_price, amount, tax, period_start, period_end,
            external_id, calculation_line_id
        )
        SELECT v.statement_id,
               row_number() OVER (
                   PARTITION BY v.statement_id
                   ORDER BY sub.processing_sequence, sub.id, seg.period_start, cl.position
               ) AS position,
               CASE cl.kind {line_type} END AS line_type,
               product.name AS product,
               sub.service_identifier,
               product.service_type,
               sub.account_id,
               (cl.kind = %(tax)s AND cl.included) AS tax_included,
               left(CASE WHEN cl.kind = %(tax)s AND cl.included
                         THEN cl.description || ': not added, already in the prices'
                         ELSE cl.description END, 300) AS description,
               cl.quantity,
               cl.unit,
               CASE WHEN cl.kind IN (%(discount)s, %(tax)s) THEN NULL ELSE cl.rate END AS unit_price,
               cl.amount,
               0,
               cl.period_start,
               cl.period_end,
               '',
               cl.id
        FROM unnest(%(segments)s::bigint[], %(statements)s::bigint[]) AS v(segment_id, statement_id)
        JOIN {quote(BillSegment._meta.db_table)} seg ON seg.id = v.segment_id
        JOIN {quote(CalculationLine._meta.db_table)} cl ON cl.segment_id = seg.id
        JOIN {quote(Subscription._meta.db_table)} sub ON sub.id = seg.subscription_id
        JOIN {quote(PricePlan._meta.db_table)} plan ON plan.id = sub.price_plan_id
        JOIN {quote(Product._meta.db_table)} product ON product.id = plan.product_id
    """
    with connection.cursor() as cursor, row_by_row_plans(cursor):
        cursor.execute(
            sql,
            {
                "tax": CalculationLine.Kind.TAX.value,
                "discount": CalculationLine.Kind.DISCOUNT.value,
                "segments": [segment for segment, _ in pairs],
                "statements": [statement for _, statement in pairs],
            },
        )


def _statement_lines_python(
    by_statement: dict[int, list[BillSegment]], statements: dict[int, Statement]
) -> None:
    """``_statement_lines`` for databases other than PostgreSQL (SQLite: small data): the same lines, made
    from plain values in Python."""
    segment_ids = [s.pk for segments in by_statement.values() for s in segments]
    if not segment_ids:
        return
    statement_of = {s.pk: unit for unit, segments in by_statement.items() for s in segments}
    subscriptions = {
        pk: (product, identifier, service_type, account_id)
        for pk, product, identifier, service_type, account_id in Subscription.objects.filter(
            segments__pk__in=segment_ids
        )
        .values_list(
            "pk",
            "price_plan__product__name",
            "service_identifier",
            "price_plan__product__service_type",
            "account_id",
        )
        .distinct()
        .order_by()
    }
    lines = CalculationLine.objects.filter(segment_id__in=segment_ids).order_by(
        "segment__subscription__processing_sequence",
        "segment__subscription_id",
        "segment__period_start",
        "position",
    )
    positions: dict[int, int] = defaultdict(int)
    printed = []
    no_unit_price = (CalculationLine.Kind.DISCOUNT, CalculationLine.Kind.TAX)
    for (
        pk,
        segment_id,
        subscription_id,
        kind,
        included,
        description,
        quantity,
        unit,
        rate,
        amount,
        start,
        end,
    ) in (
        lines.values_list(
            "pk",
            "segment_id",
            "segment__subscription_id",
            "kind",
            "included",
            "description",
            "quantity",
            "unit",
            "rate",
            "amount",
            "period_start",
            "period_end",
        )  # fmt: skip
    ):
        statement_unit = statement_of[segment_id]
        positions[statement_unit] += 1
        product, identifier, service_type, account_id = subscriptions[subscription_id]
        tax_included = kind == CalculationLine.Kind.TAX and included
        if tax_included:
            description = f"{description}: not added, already in the prices"
        printed.append(
            StatementLine(
                calculation_line_id=pk,
                statement=statements[statement_unit],
                position=positions[statement_unit],
                line_type=LINE_TYPES[kind],
                product=product,
                service_identifier=identifier,
                service_type=service_type,
                account_id=account_id,
                tax_included=tax_included,
                description=description[:300],
                quantity=quantity,
                unit=unit,
                unit_price=None if kind in no_unit_price else rate,
                amount=amount,
                period_start=start,
                period_end=end,
            )
        )
    StatementLine.objects.bulk_create(printed, batch_size=2000)


def _usage_summaries(by_statement: dict[int, list[BillSegment]], statements: dict[int, Statement]) -> None:
    """Each bill's usage per service and usage type (what the invoice's usage summary prints), with the
    units its plans included (what is left of them is the invoice's non-currency balance). The usage is
    what rating totalled per segment (SegmentUsage), not the records themselves. On PostgreSQL one
    INSERT ... SELECT aggregates the usage and the allowance lines of every bill in the database."""
    pairs = [(s.pk, statements[unit].pk) for unit, segments in by_statement.items() for s in segments]
    if not pairs:
        return
    if connection.vendor != "postgresql":
        _usage_summaries_python(by_statement, statements)
        return
    quote = connection.ops.quote_name
    totals, subscription, segment, line, component, usage_type, summary = (
        quote(m._meta.db_table)
        for m in (
            SegmentUsage,
            Subscription,
            BillSegment,
            CalculationLine,
            PlanComponent,
            UsageType,
            UsageSummary,
        )
    )
    sql = f"""
        WITH v AS (
            SELECT * FROM unnest(%(segments)s::bigint[], %(statements)s::bigint[])
                AS v(segment_id, statement_id)
        ),
        used AS (
            SELECT v.statement_id, sub.service_identifier AS identifier,
                   COALESCE(NULLIF(ut.code, ''), 'usage') AS code, SUM(t.quantity) AS quantity,
                   MAX(t.unit) AS unit
            FROM v
            JOIN {totals} t ON t.segment_id = v.segment_id
            JOIN {segment} seg ON seg.id = v.segment_id
            JOIN {subscription} sub ON sub.id = seg.subscription_id
            LEFT JOIN {usage_type} ut ON ut.id = t.usage_type_id
            GROUP BY 1, 2, 3
        ),
        included AS (
            SELECT v.statement_id, sub.service_identifier AS identifier,
                   COALESCE(NULLIF(ut.code, ''), 'usage') AS code,
                   SUM(COALESCE(c.included_quantity, 0)) AS quantity, MAX(cl.unit) AS unit
            FROM v
            JOIN {line} cl ON cl.segment_id = v.segment_id AND cl.kind = %(allowance)s
            JOIN {segment} seg ON seg.id = cl.segment_id
            JOIN {subscription} sub ON sub.id = seg.subscription_id
            LEFT JOIN {component} c ON c.id = cl.component_id
            LEFT JOIN {usage_type} ut ON ut.id = c.usage_type_id
            GROUP BY 1, 2, 3
        )
        INSERT INTO {summary} (
            statement_id, service_identifier, usage_type, quantity, unit, included_quantity
        )
        SELECT COALESCE(u.statement_id, i.statement_id), COALESCE(u.identifier, i.identifier),
               left(COALESCE(u.code, i.code), 40), COALESCE(u.quantity, 0),
               left(COALESCE(u.unit, i.unit), 20), i.quantity
        FROM used u
        FULL JOIN included i
            ON i.statement_id = u.statement_id AND i.identifier = u.identifier AND i.code = u.code
    """
    with connection.cursor() as cursor, row_by_row_plans(cursor):
        cursor.execute(
            sql,
            {
                "segments": [segment for segment, _ in pairs],
                "statements": [statement for _, statement in pairs],
                "allowance": CalculationLine.Kind.ALLOWANCE.value,
            },
        )


def _usage_summaries_python(
    by_statement: dict[int, list[BillSegment]], statements: dict[int, Statement]
) -> None:
    """``_usage_summaries`` for databases other than PostgreSQL (SQLite: small data)."""
    statement_of = {s.pk: unit for unit, segments in by_statement.items() for s in segments}
    if not statement_of:
        return
    used: dict[tuple[int, str, str], Decimal] = defaultdict(Decimal)
    units: dict[tuple[int, str, str], str] = {}
    totals = SegmentUsage.objects.filter(segment_id__in=list(statement_of)).values_list(
        "segment_id", "segment__subscription__service_identifier", "usage_type__code", "unit", "quantity"
    )
    for segment_id, identifier, code, unit, quantity in totals:
        key = (statement_of[segment_id], identifier, code or "usage")
        used[key] += quantity
        units[key] = unit
    included: dict[tuple[int, str, str], Decimal] = defaultdict(Decimal)
    for segment_id, identifier, code, unit, allowance in CalculationLine.objects.filter(
        segment_id__in=list(statement_of), kind=CalculationLine.Kind.ALLOWANCE
    ).values_list(
        "segment_id",
        "segment__subscription__service_identifier",
        "component__usage_type__code",
        "unit",
        "component__included_quantity",
    ):
        key = (statement_of[segment_id], identifier, code or "usage")
        included[key] += allowance or Decimal(0)
        units.setdefault(key, unit)
    UsageSummary.objects.bulk_create(
        UsageSummary(
            statement=statements[unit],
            service_identifier=identifier,
            usage_type=code[:40],
            quantity=used.get(key, Decimal(0)),
            unit=units[key][:20],
            included_quantity=included.get(key),
        )
        for key in sorted(set(used) | set(included))
        for unit, identifier, code in [key]
    )


def segment_details(segments: list[BillSegment]) -> list[dict[str, Any]]:
    """The segments of a bill with their lines, as the bills API and the preview page show them."""
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


def bills_assemble(
    *,
    subscriptions_by_unit: dict[int, list[int]],
    bill_date: dt.date,
    bill_as_of: dt.date | None = None,
    due_date_offset_days: int = 0,
    actor: Any = None,
    preview: bool = False,
    details: bool = False,
) -> dict[int, BillResult]:
    """Assemble and post one bill per bill unit (account id -> the subscription ids its bill carries).

    Runs in the caller's transaction. Units with nothing to bill (no rated charges, nothing to sweep) are
    left out of the answer. ``bill_as_of``: only segments of periods started by then. ``preview``: the
    number is PREVIEW and nothing is audited (the caller rolls back). ``details``: each result lists its
    segments with their lines (bill now and the preview show them).
    """
    unit_ids = sorted(subscriptions_by_unit)
    if not unit_ids:
        return {}
    units = {
        u.pk: u
        for u in Account.objects.select_for_update(of=("self",))
        .select_related("billing_profile")
        .filter(pk__in=unit_ids)
        .order_by("pk")
    }
    biller = engine_biller()
    unit_of_subscription = {sub: unit for unit, subs in subscriptions_by_unit.items() for sub in subs}
    segment_rows = BillSegment.objects.select_for_update(of=("self",)).filter(
        subscription_id__in=list(unit_of_subscription),
        status=BillSegment.Status.RATED,
        statement__isnull=True,
    )
    if bill_as_of is not None:
        segment_rows = segment_rows.filter(period_start__lte=bill_as_of)
    segments: dict[int, list[BillSegment]] = defaultdict(list)
    for segment in segment_rows.order_by("period_start", "id"):
        segments[unit_of_subscription[segment.subscription_id]].append(segment)
    swept: dict[int, list[FinancialTransaction]] = defaultdict(list)
    for row in (
        unswept_rows(unit_ids=unit_ids, biller=biller, bill_date=bill_date)
        .select_for_update(of=("self",))
        .select_related("corrects")
        .order_by("effective_date", "id")
    ):
        swept[row.account_id].append(row)
    billable = [pk for pk in unit_ids if pk in units and (segments.get(pk) or swept.get(pk))]
    if not billable:
        return {}
    previous = _previous_balances(billable, biller)
    messages = list(BillMessage.objects.filter(active=True).order_by("priority", "code"))
    numbers = (
        ["PREVIEW"] * len(billable)
        if preview
        else next_numbers(STATEMENT_SERIES, STATEMENT_SERIES_SPEC, count=len(billable))
    )
    now = timezone.now()
    results: dict[int, BillResult] = {}
    statements: dict[int, Statement] = {}
    for pk, number in zip(billable, numbers, strict=True):
        unit = units[pk]
        profile = unit.billing_profile
        unit_segments, unit_swept = segments.get(pk, []), swept.get(pk, [])
        amounts = bill_amounts(
            previous_balance=previous.get(pk, Decimal(0)),
            swept=unit_swept,
            new_charges=sum((s.new_charges for s in unit_segments), Decimal(0)),
            taxes=sum((s.taxes for s in unit_segments), Decimal(0)),
        )
        due_date = max(
            bill_date, bill_date + dt.timedelta(days=profile.payment_terms_days + due_date_offset_days)
        )
        statements[pk] = Statement(
            number=number,
            account=unit,
            biller=biller,
            external_id=number,
            statement_date=bill_date,
            period_start=min((s.period_start for s in unit_segments), default=bill_date),
            period_end=max((s.period_end for s in unit_segments), default=bill_date),
            due_date=due_date,
            currency=profile.currency,
            status=Statement.Status.OPEN if amounts["total_due"] > 0 else Statement.Status.PAID,
            channel=Channel.ENGINE,
            content_hash=_content_hash(amounts, number),
            received_at=now,
            **amounts,
        )
    insert_instances(list(statements.values()))
    _statement_lines({pk: segments.get(pk, []) for pk in billable}, statements)
    _usage_summaries({pk: segments.get(pk, []) for pk in billable}, statements)
    transactions_post_bulk(
        entries=[
            LedgerEntry(
                account_id=pk,
                kind=FinancialTransaction.Kind.BILL,
                amount=s.new_charges + s.taxes,
                currency=s.currency,
                effective_date=bill_date,
                idempotency_key=f"bill:{s.pk}",
                biller=biller,
                description=f"Bill {s.number}",
                statement_id=s.pk,
            )
            for pk, s in statements.items()
            if s.new_charges + s.taxes
        ],
        actor=actor,
    )
    swept_ids = [row.pk for pk in billable for row in swept.get(pk, [])]
    set_columns(
        FinancialTransaction,
        swept_ids,
        {"statement": [statements[pk].pk for pk in billable for _ in swept.get(pk, [])]},
    )
    billed = [(s, statements[pk]) for pk in billable for s in segments.get(pk, [])]
    set_columns(
        BillSegment,
        [s.pk for s, _ in billed],
        {
            "status": [BillSegment.Status.BILLED] * len(billed),
            "statement": [statement.pk for _, statement in billed],
            "frozen_at": [now] * len(billed),
        },
    )
    billed_through_advance(segments=[s for s, _ in billed])
    attached = {pk: _messages_for(messages, units[pk], bill_date) for pk in billable}
    StatementMessage.objects.bulk_create(
        StatementMessage(statement=statements[pk], message=m, position=i, text=m.text)
        for pk in billable
        for i, m in enumerate(attached[pk], 1)
    )
    if not preview:
        audit_records_bulk(
            actor=actor,
            action="bill.create",
            objects=[statements[pk] for pk in billable],
            afters=[
                snapshot(statements[pk], ["number", "statement_date", "due_date", *AMOUNT_FIELDS])
                for pk in billable
            ],
            account_ids=billable,
        )
    for pk in billable:
        statement = statements[pk]
        unit_segments = segments.get(pk, [])
        results[pk] = BillResult(
            statement=statement,
            preview=preview,
            account=units[pk],
            currency=statement.currency,
            statement_date=bill_date,
            due_date=statement.due_date,
            period_start=statement.period_start,
            period_end=statement.period_end,
            segments=segment_details(unit_segments) if details else [],
            swept=[
                {
                    "id": row.pk,
                    "kind": row.kind,
                    "effective_date": row.effective_date,
                    "amount": row.amount,
                    "description": row.description,
                }
                for row in swept.get(pk, [])
            ],
            messages=[m.text for m in attached[pk]],
            segment_count=len(unit_segments),
            invoices=len({s.subscription_id for s in unit_segments}),
            **{name: getattr(statement, name) for name in AMOUNT_FIELDS},
        )
    return results
