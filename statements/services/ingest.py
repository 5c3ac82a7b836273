"""Storing what billers send: statements (create or replace by external id), balance snapshots, payments and
adjustments made at the biller, usage summaries.

Every function stores one record in one transaction and is safe to repeat: the same record again is a
``duplicate`` and changes nothing. ``ingest_records`` runs a batch (a bulk API request, a pulled page, a
dropped file) record by record, each in its own savepoint, so one bad record never loses the good ones, and
answers per record. The push API, the pull loader and the file drop all come through here.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field
from dataclasses import fields as dataclass_fields
from decimal import Decimal
from typing import Any

from django.db import DataError, IntegrityError, transaction
from django.db.models import ProtectedError, Sum
from django.utils import timezone

from accounts.models import Account, Biller, BillerReference
from billing_mgmt.audit import audit_record, audit_records_bulk, snapshot
from billing_mgmt.errors import ApplicationError, Conflict
from billing_mgmt.numbering import SeriesSpec, next_number, next_numbers
from statements.models import (
    BillerBalanceSnapshot,
    Channel,
    FinancialTransaction,
    Statement,
    StatementLine,
    UsageSummary,
)
from statements.records import RecordInvalid, validate_record
from statements.records_plain import plain_statement

from .ledger import LedgerEntry, transaction_post, transactions_post_bulk

STATEMENT_SERIES = "statement"
STATEMENT_SERIES_SPEC = SeriesSpec(name="Statements", prefix="ST-", padding=8)

ACCEPTED = "accepted"
DUPLICATE = "duplicate"
REJECTED = "rejected"

# Header fields compared and audited when a statement is replaced.
STATEMENT_HEADER = [
    "number", "statement_date", "period_start", "period_end", "due_date", "currency", "previous_balance",
    "payments", "adjustments", "new_charges", "taxes", "total_due", "status", "version",
]  # fmt: skip

# How a biller's transaction kind lands in the ledger: (ledger kind, sign applied to the biller's amount).
TRANSACTION_KINDS = {
    "payment": (FinancialTransaction.Kind.PAYMENT, -1),
    "write_off": (FinancialTransaction.Kind.WRITE_OFF, -1),
    "refund": (FinancialTransaction.Kind.REFUND, 1),
    "adjustment": (FinancialTransaction.Kind.ADJUSTMENT, 1),
}


@dataclass
class IngestResult:
    """The answer for one record of a batch."""

    index: int
    type: str
    status: str  # accepted | duplicate | rejected
    external_id: str = ""
    outcome: str = ""  # created | replaced | status_updated | posted | recorded | updated
    id: int | None = None
    number: str = ""
    code: str = ""
    message: str = ""
    fields: dict[str, list[str]] = field(default_factory=dict)
    http_status: int = 200  # what a single-record endpoint answers for it (400, 409, ...)

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"index": self.index, "type": self.type, "status": self.status}
        if self.external_id:
            data["external_id"] = self.external_id
        if self.status == REJECTED:
            data["error"] = {"code": self.code, "message": self.message, "fields": self.fields}
        else:
            data["outcome"] = self.outcome
            if self.id is not None:
                data["id"] = self.id
            if self.number:
                data["number"] = self.number
        return data


def _account_currency(account: Account) -> str | None:
    profile = getattr(account, "billing_profile", None)
    return profile.currency if profile else None


def _check_account_currency(account: Account, currency: str) -> None:
    expected = _account_currency(account)
    if expected and expected != currency:
        raise ApplicationError(
            "The currency is not the account's.",
            code="wrong_currency",
            fields={"currency": [f"Account {account.number} bills in {expected}, not {currency}."]},
        )


def _canonical(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value.normalize(), "f") if value else "0"
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    return value


def statement_content_hash(data: dict[str, Any]) -> str:
    """A fingerprint of what a statement says, status aside (a status change is not a replacement)."""
    content = {k: v for k, v in data.items() if k not in ("status", "account")}
    encoded = json.dumps(_canonical(content), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(encoded.encode()).hexdigest()


def _locked_reason(statement: Statement) -> str | None:
    if statement.is_settled:
        return f"it is {statement.get_status_display().lower()}"
    if statement.is_disputed:
        return "it is disputed"
    return None


def _detail_rows(
    statement: Statement, data: dict[str, Any]
) -> tuple[list[StatementLine], list[UsageSummary]]:
    lines = [
        StatementLine(
            statement=statement,
            position=i,
            line_type=line["type"],
            product=line["product"],
            service_identifier=line["service_identifier"],
            description=line["description"],
            quantity=line["quantity"],
            unit=line["unit"],
            unit_price=line["unit_price"],
            amount=line["amount"],
            tax=line["tax"],
            period_start=line["period_start"],
            period_end=line["period_end"],
            external_id=line["external_id"],
        )
        for i, line in enumerate(data["lines"], start=1)
    ]
    usage = [
        UsageSummary(
            statement=statement,
            service_identifier=item["service_identifier"],
            usage_type=item["usage_type"],
            quantity=item["quantity"],
            unit=item["unit"],
            included_quantity=item["included_quantity"],
        )
        for item in data["usage"]
    ]
    return lines, usage


def _write_details(statement: Statement, data: dict[str, Any]) -> None:
    lines, usage = _detail_rows(statement, data)
    StatementLine.objects.bulk_create(lines, batch_size=1000)
    UsageSummary.objects.bulk_create(usage, batch_size=1000)


def _post_charges(statement: Statement, actor: Any, *, new: bool = False) -> None:
    """Bring the ledger's rows for this statement to its new charges + taxes: the first version posts them;
    a replacement posts the difference as a correction of the first row (the ledger is append-only)."""
    posted, first = Decimal(0), None
    if not new:  # a statement created in this transaction has no rows yet: save the two reads
        bill_rows = FinancialTransaction.objects.filter(
            statement=statement, kind=FinancialTransaction.Kind.BILL
        )
        posted = bill_rows.aggregate(total=Sum("amount"))["total"] or Decimal(0)
        first = bill_rows.order_by("id").first()
    delta = statement.ledger_amount - posted
    if delta == 0:
        return
    replaced = f" (replaced, version {statement.version})" if first else ""
    entry = _bill_entry(statement, delta, replaced)
    transaction_post(
        account=statement.account, corrects=first, statement=statement, actor=actor, **_post_fields(entry)
    )


def _post_opening_balance(statement: Statement, actor: Any) -> None:
    """The first statement of a biller for an account carries history this ledger never saw: its previous
    balance becomes an opening-balance row, so the ledger and the biller's balance can agree."""
    if statement.previous_balance == 0:
        return
    has_history = FinancialTransaction.objects.filter(
        account=statement.account, biller=statement.biller
    ).exists()
    if has_history:
        return
    transaction_post(account=statement.account, actor=actor, **_post_fields(_opening_entry(statement)))


def _opening_entry(statement: Statement) -> LedgerEntry:
    """The opening-balance row of a biller's first statement for an account: its previous balance."""
    return LedgerEntry(
        account_id=statement.account_id,
        kind=FinancialTransaction.Kind.OPENING_BALANCE,
        amount=statement.previous_balance,
        currency=statement.currency,
        effective_date=statement.period_start,
        idempotency_key=f"opening:{statement.account_id}:{statement.biller_id}",
        biller=statement.biller,
        description=f"Balance brought forward from {statement.biller.name}"[:300],
    )


def _bill_entry(statement: Statement, amount: Decimal, suffix: str = "") -> LedgerEntry:
    """The BILL row of a statement's version: its charges (or, for a replacement, the difference)."""
    return LedgerEntry(
        account_id=statement.account_id,
        kind=FinancialTransaction.Kind.BILL,
        amount=amount,
        currency=statement.currency,
        effective_date=statement.statement_date,
        idempotency_key=f"statement:{statement.pk}:v{statement.version}",
        biller=statement.biller,
        description=f"Statement {statement.number}{suffix}"[:300],
        statement_id=statement.pk,
    )


def _post_fields(entry: LedgerEntry) -> dict[str, Any]:
    """An entry's fields as ``transaction_post`` takes them (it takes the account and statement as rows)."""
    rows = ("account_id", "statement_id")
    return {f.name: getattr(entry, f.name) for f in dataclass_fields(entry) if f.name not in rows}


@transaction.atomic
def statement_ingest(
    *,
    biller: Biller,
    account: Account,
    data: dict[str, Any],
    channel: str = Channel.API,
    actor: Any = None,
) -> tuple[Statement, str]:
    """Create or replace a statement by (biller, external id). Returns (statement, outcome).

    outcome: ``created``, ``replaced``, ``status_updated`` or ``duplicate`` (the same content again: nothing
    written). A paid, partially paid or disputed statement cannot be replaced: Conflict (its status may still
    move). ``data`` is a validated statement record (statements.records).
    """
    _check_account_currency(account, data["currency"])
    content_hash = statement_content_hash(data)
    external_id = data["external_id"]
    existing = Statement.objects.select_for_update().filter(biller=biller, external_id=external_id).first()
    if existing is None:
        statement = Statement(
            account=account,
            biller=biller,
            external_id=external_id,
            number=data["number"] or next_number(STATEMENT_SERIES, STATEMENT_SERIES_SPEC),
            channel=channel,
            content_hash=content_hash,
            received_at=timezone.now(),
            **{k: data[k] for k in STATEMENT_HEADER if k not in ("number", "version")},
        )
        try:
            with transaction.atomic():
                statement.save()
        except IntegrityError:
            if Statement.objects.filter(biller=biller, external_id=external_id).exists():
                # A concurrent request stored it first; this one is a repeat of it, or a replacement.
                return statement_ingest(
                    biller=biller, account=account, data=data, channel=channel, actor=actor
                )
            raise Conflict(
                "The statement number is already used by another statement of this biller.",
                code="duplicate_number",
                fields={"number": [f"{data['number']} is another statement's number."]},
            ) from None
        _write_details(statement, data)
        _post_opening_balance(statement, actor)
        _post_charges(statement, actor, new=True)
        audit_record(
            actor=actor,
            action="statement.create",
            obj=statement,
            after=snapshot(statement, STATEMENT_HEADER),
            account_id=account.pk,
        )
        return statement, "created"

    if existing.account_id != account.pk:
        raise Conflict(
            "This statement belongs to another account.",
            code="statement_account_changed",
            fields={"account": ["A statement cannot move to another account; send a new external id."]},
        )
    if existing.content_hash == content_hash:
        if existing.status == data["status"]:
            return existing, DUPLICATE
        if existing.status == Statement.Status.OVERDUE and data["status"] == Statement.Status.OPEN:
            # Overdue is this product's judgement (statements_mark_overdue); an unchanged re-send that still
            # says "open" does not undo it, or the bill would flip back and forth every night.
            return existing, DUPLICATE
        before = snapshot(existing, ["status"])
        existing.status = data["status"]
        existing.save(update_fields=["status"])
        audit_record(
            actor=actor,
            action="statement.status",
            obj=existing,
            before=before,
            after=snapshot(existing, ["status"]),
            account_id=account.pk,
        )
        return existing, "status_updated"

    reason = _locked_reason(existing)
    if reason:
        raise Conflict(
            f"Statement {existing.number} cannot be replaced: {reason}. Send an adjustment instead.",
            code="statement_locked",
            fields={"external_id": [f"Statement {external_id} is {reason.removeprefix('it is ')}."]},
        )
    before = snapshot(existing, STATEMENT_HEADER)
    for name in STATEMENT_HEADER:
        if name == "version":
            continue
        if name == "number" and not data["number"]:
            continue
        setattr(existing, name, data[name])
    existing.version += 1
    existing.content_hash = content_hash
    existing.channel = channel
    existing.received_at = timezone.now()
    existing.usage_detail_purged_at = None
    try:
        with transaction.atomic():
            existing.save()
    except IntegrityError:
        raise Conflict(
            "The statement number is already used by another statement of this biller.",
            code="duplicate_number",
            fields={"number": [f"{data['number']} is another statement's number."]},
        ) from None
    try:
        with transaction.atomic():
            existing.lines.all().delete()
    except ProtectedError:
        # Entries made in this product point at its lines (an adjustment or a dispute credit of one line): the
        # lines they are about cannot go away. The caller's transaction rolls back the header change too.
        raise Conflict(
            f"Statement {existing.number} cannot be replaced: adjustments were made on its lines. "
            "Send an adjustment instead.",
            code="statement_locked",
            fields={"external_id": [f"Statement {external_id} has adjustments on its lines."]},
        ) from None
    existing.usage_summaries.all().delete()
    _write_details(existing, data)
    _post_charges(existing, actor)
    audit_record(
        actor=actor,
        action="statement.replace",
        obj=existing,
        before=before,
        after=snapshot(existing, STATEMENT_HEADER),
        account_id=account.pk,
    )
    return existing, "replaced"


@transaction.atomic
def balance_snapshot_record(
    *,
    biller: Biller,
    account: Account,
    as_of: dt.datetime,
    amount: Decimal,
    currency: str,
    external_id: str = "",
    channel: str = Channel.API,
    actor: Any = None,
) -> tuple[BillerBalanceSnapshot, bool]:
    """Keep a biller's balance of an account at a moment. Returns (snapshot, created).

    Snapshots are never overwritten: the same moment (or external id) again with the same amount is a
    duplicate; with another amount it is a Conflict (send a new moment instead).
    """
    _check_account_currency(account, currency)
    lookup = {"biller": biller, "external_id": external_id} if external_id else {
        "biller": biller, "account": account, "as_of": as_of,
    }  # fmt: skip
    existing = BillerBalanceSnapshot.objects.filter(**lookup).first()
    if existing is None:
        try:
            with transaction.atomic():
                snap = BillerBalanceSnapshot.objects.create(
                    biller=biller,
                    account=account,
                    as_of=as_of,
                    amount=amount,
                    currency=currency,
                    external_id=external_id,
                    channel=channel,
                    received_at=timezone.now(),
                )
        except IntegrityError:
            existing = (
                BillerBalanceSnapshot.objects.filter(biller=biller, account=account, as_of=as_of).first()
                or BillerBalanceSnapshot.objects.filter(**lookup).first()
            )
            if existing is None:
                raise
        else:
            audit_record(
                actor=actor, action="balance_snapshot.record", obj=snap, after=snapshot(snap),
                account_id=account.pk,
            )  # fmt: skip
            return snap, True
    same = (
        existing.account_id == account.pk
        and existing.as_of == as_of
        and existing.amount == amount
        and existing.currency == currency
    )
    if not same:
        raise Conflict(
            "A different balance was already recorded for this moment; snapshots are never overwritten.",
            code="snapshot_conflict",
            fields={"as_of" if not external_id else "external_id": ["Already recorded with another amount."]},
        )
    return existing, False


@transaction.atomic
def biller_transaction_ingest(
    *,
    biller: Biller,
    account: Account,
    kind: str,
    amount: Decimal,
    currency: str,
    date: dt.date,
    external_id: str,
    description: str = "",
    statement_external_id: str = "",
    actor: Any = None,
) -> tuple[FinancialTransaction, bool]:
    """A payment, adjustment, refund or write-off that happened at the biller becomes one ledger row.

    The biller states payments, refunds and write-offs as positive amounts and adjustments signed; the
    ledger's sign says what the customer owes (a payment lowers it). Idempotent by (biller, external id).
    """
    if kind not in TRANSACTION_KINDS:
        raise ApplicationError("Unknown transaction kind.", fields={"kind": [f"'{kind}' is not known."]})
    ledger_kind, sign = TRANSACTION_KINDS[kind]
    statement = None
    if statement_external_id:
        statement = Statement.objects.filter(
            biller=biller, external_id=statement_external_id, account=account
        ).first()
        if statement is None:
            raise ApplicationError(
                "Unknown statement.",
                code="unknown_statement",
                fields={"statement": [f"No statement {statement_external_id} of this account from you."]},
            )
    _check_account_currency(account, currency)
    return transaction_post(
        account=account,
        kind=ledger_kind,
        amount=amount * sign,
        currency=currency,
        effective_date=date,
        biller=biller,
        external_id=external_id,
        description=description or f"{kind.replace('_', '-').capitalize()} at {biller.name}",
        statement=statement,
        actor=actor,
    )


@transaction.atomic
def usage_summary_ingest(
    *, biller: Biller, statement_external_id: str, items: list[dict[str, Any]], actor: Any = None
) -> tuple[Statement, bool]:
    """Set usage summaries of one of the biller's statements (by service and usage type). Returns
    (statement, changed); the same summaries again change nothing."""
    statement = (
        Statement.objects.select_for_update().filter(biller=biller, external_id=statement_external_id).first()
    )
    if statement is None:
        raise ApplicationError(
            "Unknown statement.",
            code="unknown_statement",
            fields={"statement": [f"No statement {statement_external_id} from you; send it first."]},
        )
    current = {(u.service_identifier, u.usage_type): u for u in statement.usage_summaries.all()}
    changed = False
    for item in items:
        key = (item["service_identifier"], item["usage_type"])
        values = {
            "quantity": item["quantity"],
            "unit": item["unit"],
            "included_quantity": item["included_quantity"],
        }
        summary = current.get(key)
        if summary is None:
            UsageSummary.objects.create(
                statement=statement, service_identifier=key[0], usage_type=key[1], **values
            )
            changed = True
        elif any(getattr(summary, k) != v for k, v in values.items()):
            for k, v in values.items():
                setattr(summary, k, v)
            summary.save(update_fields=list(values))
            changed = True
    if changed:
        audit_record(
            actor=actor,
            action="statement.usage",
            obj=statement,
            after={"usage_items": len(items)},
            account_id=statement.account_id,
        )
    return statement, changed


def _accounts_by_reference(biller: Biller, references: set[str]) -> dict[str, Account]:
    found = BillerReference.objects.filter(biller=biller, external_ref__in=references).select_related(
        "account__billing_profile"
    )
    return {ref.external_ref: ref.account for ref in found}


def _stored(record_type: str, data: dict[str, Any], outcome: str | None, obj: Any) -> IngestResult:
    """The answer for a record that was stored (``outcome``) or already was (None: a duplicate)."""
    return IngestResult(
        index=0,
        type=record_type,
        status=ACCEPTED if outcome else DUPLICATE,
        external_id=str(data.get("external_id") or data.get("statement") or ""),
        outcome=outcome or "",
        id=obj.pk,
        number=getattr(obj, "number", ""),
    )


def _store(
    biller: Biller,
    record_type: str,
    data: dict[str, Any],
    accounts: dict[str, Account],
    channel: str,
    actor: Any,
) -> IngestResult:
    if record_type == "usage":
        statement, changed = usage_summary_ingest(
            biller=biller, statement_external_id=data["statement"], items=data["usage"], actor=actor
        )
        return _stored(record_type, data, "updated" if changed else None, statement)
    account = accounts.get(data["account"])
    if account is None:
        raise ApplicationError(
            "Unknown account reference.",
            code="unknown_account",
            fields={"account": [f"No account with reference '{data['account']}' at this biller."]},
        )
    if record_type == "statement":
        statement, outcome = statement_ingest(
            biller=biller, account=account, data=data, channel=channel, actor=actor
        )
        return _stored(record_type, data, None if outcome == DUPLICATE else outcome, statement)
    if record_type == "balance":
        snap, created = balance_snapshot_record(
            biller=biller,
            account=account,
            as_of=data["as_of"],
            amount=data["amount"],
            currency=data["currency"],
            external_id=data["external_id"],
            channel=channel,
            actor=actor,
        )
        return _stored(record_type, data, "recorded" if created else None, snap)
    row, created = biller_transaction_ingest(
        biller=biller,
        account=account,
        kind=data["kind"],
        amount=data["amount"],
        currency=data["currency"],
        date=data["date"],
        external_id=data["external_id"],
        description=data["description"],
        statement_external_id=data["statement"],
        actor=actor,
    )
    return _stored(record_type, data, "posted" if created else None, row)


def _rejected(
    index: int,
    record_type: str,
    data: dict[str, Any],
    code: str,
    message: str,
    fields: dict[str, list[str]],
    http_status: int,
) -> IngestResult:
    return IngestResult(
        index=index,
        type=record_type,
        status=REJECTED,
        external_id=str(data.get("external_id") or data.get("statement") or ""),
        code=code,
        message=message,
        fields=fields,
        http_status=http_status,
    )


def ingest_records(
    *,
    biller: Biller,
    records: list[Any],
    channel: str = Channel.API,
    actor: Any = None,
    default_type: str | None = None,
) -> list[IngestResult]:
    """Validate and store a batch of records, each in its own transaction (a savepoint inside a caller's
    transaction). Returns one result per record, in order; a rejected record names its fields."""
    validated: list[tuple[int, str, dict[str, Any]] | IngestResult] = []
    references: set[str] = set()
    for index, record in enumerate(records):
        try:
            plain = plain_statement(record, default_type=default_type)
            if plain is not None:
                record_type, data = "statement", plain
            else:
                record_type, data = validate_record(record, default_type=default_type)
        except RecordInvalid as exc:
            raw_type = record.get("type", default_type) if isinstance(record, dict) else None
            raw_id = record.get("external_id") if isinstance(record, dict) else None
            validated.append(
                IngestResult(
                    index=index,
                    type=str(raw_type or ""),
                    status=REJECTED,
                    external_id=str(raw_id or "")[:100],
                    code="invalid",
                    message="The record is not valid.",
                    fields=exc.fields,
                    http_status=400,
                )
            )
            continue
        if "account" in data:
            references.add(data["account"])
        validated.append((index, record_type, data))
    accounts = _accounts_by_reference(biller, references) if references else {}
    in_bulk = _new_statements_in_bulk(biller, validated, accounts, channel, actor)

    results: list[IngestResult] = []
    for item in validated:
        if isinstance(item, IngestResult):
            results.append(item)
            continue
        index, record_type, data = item
        if index in in_bulk:
            results.append(in_bulk[index])
            continue
        try:
            with transaction.atomic():
                result = _store(biller, record_type, data, accounts, channel, actor)
        except ApplicationError as exc:
            result = _rejected(index, record_type, data, exc.code, exc.message, exc.fields, exc.status_code)
        except (IntegrityError, DataError) as exc:
            # A constraint the validation did not foresee: this record only is refused, the batch goes on.
            result = _rejected(index, record_type, data, "conflict", str(exc).splitlines()[0][:300], {}, 409)
        result.index = index
        results.append(result)
    return results


# --- new statements in sets ---------------------------------------------------------------------------------
#
# Most of a batch is usually statements the biller sends for the first time. Stored one by one, each takes
# some twenty queries (its own transaction, savepoints, the ledger's idempotency look-ups, a balance update,
# audit rows); stored together they take a fixed handful. Only the statements whose outcome cannot depend
# on the order of the batch's records go together: new external ids (not stored, sent once in the batch),
# numbers not used yet, an account that no other record of the batch touches, the account's currency, and no
# other record naming the statement. Their answers are exactly those of ``statement_ingest`` (``created``),
# and if a concurrent request stores one of their ids or numbers meanwhile, the set is rolled back and they
# all take the record-by-record way, which answers each of them as it would have.


def _bulk_candidates(
    biller: Biller, validated: list, accounts: dict[str, Account]
) -> list[tuple[int, dict[str, Any], Account]]:
    records = [item for item in validated if not isinstance(item, IngestResult)]
    statements = [(i, data) for i, record_type, data in records if record_type == "statement"]
    if len(statements) < 2:
        return []  # one statement alone: the record-by-record way is as quick
    external_ids: dict[str, int] = {}
    numbers: dict[str, int] = {}
    for _, data in statements:
        external_ids[data["external_id"]] = external_ids.get(data["external_id"], 0) + 1
        if data["number"]:
            numbers[data["number"]] = numbers.get(data["number"], 0) + 1
    stored_ids = set(
        Statement.objects.filter(biller=biller, external_id__in=list(external_ids))
        .order_by()
        .values_list("external_id", flat=True)
    )
    used_numbers = (
        set(
            Statement.objects.filter(biller=biller, number__in=list(numbers)).values_list("number", flat=True)
        )
        if numbers
        else set()
    )
    candidates = []
    for index, data in statements:
        account = accounts.get(data["account"])
        if (
            account is not None
            and external_ids[data["external_id"]] == 1
            and data["external_id"] not in stored_ids
            and (not data["number"] or (numbers[data["number"]] == 1 and data["number"] not in used_numbers))
            and _account_currency(account) in (None, data["currency"])
        ):
            candidates.append((index, data, account))
    chosen = {index for index, _, _ in candidates}
    touched_accounts: set[str] = set()
    named_statements: set[str] = set()
    for index, _record_type, data in records:
        if index in chosen:
            continue
        if "account" in data:
            touched_accounts.add(data["account"])
        if data.get("statement"):
            named_statements.add(data["statement"])
    return [
        (index, data, account)
        for index, data, account in candidates
        if data["account"] not in touched_accounts and data["external_id"] not in named_statements
    ]


def _new_statements_in_bulk(
    biller: Biller, validated: list, accounts: dict[str, Account], channel: str, actor: Any
) -> dict[int, IngestResult]:
    """Store the batch's plain new statements together (comment above); their answers by record index."""
    candidates = _bulk_candidates(biller, validated, accounts)
    if not candidates:
        return {}
    try:
        with transaction.atomic():
            statements = _create_statements(biller, candidates, channel, actor)
    except IntegrityError:
        return {}  # stored meanwhile by a concurrent request: each one answers on its own
    return {
        index: IngestResult(
            index=index,
            type="statement",
            status=ACCEPTED,
            external_id=statement.external_id,
            outcome="created",
            id=statement.pk,
            number=statement.number,
        )
        for (index, _, _), statement in zip(candidates, statements, strict=True)
    }


def _create_statements(
    biller: Biller, candidates: list[tuple[int, dict[str, Any], Account]], channel: str, actor: Any
) -> list[Statement]:
    """What ``statement_ingest`` does for a new statement, for many at once."""
    numbers = iter(
        next_numbers(
            STATEMENT_SERIES, STATEMENT_SERIES_SPEC, count=sum(1 for _, d, _ in candidates if not d["number"])
        )
    )
    received_at = timezone.now()
    statements = [
        Statement(
            account=account,
            biller=biller,
            external_id=data["external_id"],
            number=data["number"] or next(numbers),
            channel=channel,
            content_hash=statement_content_hash(data),
            received_at=received_at,
            **{k: data[k] for k in STATEMENT_HEADER if k not in ("number", "version")},
        )
        for _, data, account in candidates
    ]
    Statement.objects.bulk_create(statements)
    lines: list[StatementLine] = []
    usage: list[UsageSummary] = []
    for statement, (_, data, _) in zip(statements, candidates, strict=True):
        statement_lines, statement_usage = _detail_rows(statement, data)
        lines += statement_lines
        usage += statement_usage
    StatementLine.objects.bulk_create(lines, batch_size=1000)
    UsageSummary.objects.bulk_create(usage, batch_size=1000)

    # The ledger, as _post_opening_balance and _post_charges post it, statement after statement.
    account_ids = {account.pk for _, _, account in candidates}
    with_history = set(
        FinancialTransaction.objects.filter(biller=biller, account_id__in=account_ids)
        .order_by()
        .values_list("account_id", flat=True)
        .distinct()
    )
    entries = []
    for statement in statements:
        if statement.previous_balance != 0 and statement.account_id not in with_history:
            entries.append(_opening_entry(statement))
            with_history.add(statement.account_id)
        if statement.ledger_amount != 0:
            entries.append(_bill_entry(statement, statement.ledger_amount))
            with_history.add(statement.account_id)
    transactions_post_bulk(entries=entries, actor=actor)
    audit_records_bulk(
        actor=actor,
        action="statement.create",
        objects=statements,
        afters=[snapshot(statement, STATEMENT_HEADER) for statement in statements],
        account_ids=[statement.account_id for statement in statements],
    )
    return statements
