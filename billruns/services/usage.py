"""Usage records for the rating engine: ingest (API, CSV import) and reprocessing of rejected records.

A record names its usage (type, quantity, unit, when) and the subscription it belongs to: by id, or by the
service identifier (phone number, meter) and the event's business day. Each record of a batch gets its own
answer, by ``outcome``:

* ``created``: stored ACCEPTED, matched to a subscription; rating picks it up;
* ``rejected``: stored REJECTED, with ``rejection_code`` and ``rejection_reason``: well formed, but it
  matches nothing (yet) or does not fit (unknown usage type, wrong unit, no subscription on that day, the plan
  does not price that usage). It waits in admin for the fix, then ``usage_records_reprocess`` matches it;
* ``duplicate``: the same record (source, external id, content) was received before; nothing written;
* ``conflict``: the source's external id was received before with other content; nothing changed;
* ``invalid``: malformed (a missing or negative quantity, a time without offset, not an object...); not
  stored, with field errors, so the sender fixes and sends it again.

Biller isolation: a source that is an external biller (an API client's biller, or a source named after one)
reaches only the subscriptions of accounts that reference that biller; the engine's own (internal) biller and
sources that are not billers (file imports by admins) reach every subscription. Another biller's subscription
looks exactly like a missing one.

Speed: a batch is one transaction with a handful of queries whatever its size.
A plain record (strings in their canonical form) is parsed by a quick path (``_parse_plain``), anything else
by ``_parse``, which words every field error. Usage types, subscriptions (by id and by service identifier,
bounded to the biller's accounts, in one query with array parameters) and priced usage types are read once,
and the rows go in with one binary COPY. The unique index on (source, external id) is the only check for
records received before: when the COPY meets one (a resend, or a concurrent batch, whose commit it waits
for), its savepoint is rolled back and one INSERT ... ON CONFLICT DO NOTHING stores the others; the skipped
ones are read back and answered duplicate or conflict. No "look first" query, whose plan can go wrong
while a new source's rows are missing from the table statistics, and no window between looking and
inserting.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.db.models import BooleanField, Model, Q, QuerySet
from django.db.models.expressions import RawSQL
from django.utils import timezone

from accounts.models import Biller
from accounts.selectors import accounts_for_biller
from billing_mgmt.audit import audit_record
from billing_mgmt.bulk import insert_rows, next_ids
from statements.models import QUANTITY_DIGITS, QUANTITY_PLACES

from ..models import PlanComponent, Subscription, UsageRecord, UsageToRate, UsageType

MAX_SOURCE_LENGTH = 60
INSERT_BATCH = 1000  # rows per INSERT statement
REPROCESS_CHUNK = 2000  # rejected records matched again per round

# Outcomes of one record (UsageAnswer.outcome).
CREATED = "created"
DUPLICATE = "duplicate"
REJECTED = "rejected"
INVALID = "invalid"
CONFLICT = "conflict"
OUTCOMES = (CREATED, DUPLICATE, REJECTED, INVALID, CONFLICT)

# Why a stored record is REJECTED (UsageRecord.rejection_code).
UNKNOWN_USAGE_TYPE = "unknown_usage_type"
WRONG_UNIT = "wrong_unit"
UNKNOWN_SUBSCRIPTION = "unknown_subscription"
NO_SUBSCRIPTION = "no_subscription"
AMBIGUOUS_SUBSCRIPTION = "ambiguous_subscription"
IDENTIFIER_MISMATCH = "identifier_mismatch"
OUTSIDE_SUBSCRIPTION_DATES = "outside_subscription_dates"
USAGE_NOT_PRICED = "usage_not_priced"
REJECTION_CODES = {
    UNKNOWN_USAGE_TYPE: "Unknown usage type",
    WRONG_UNIT: "Wrong unit for the usage type",
    UNKNOWN_SUBSCRIPTION: "Unknown subscription",
    NO_SUBSCRIPTION: "No subscription for the service on that day",
    AMBIGUOUS_SUBSCRIPTION: "More than one subscription for the service on that day",
    IDENTIFIER_MISMATCH: "Subscription and service identifier disagree",
    OUTSIDE_SUBSCRIPTION_DATES: "Event outside the subscription's dates",
    USAGE_NOT_PRICED: "The price plan has no component for the usage type",
}

_MAX_INTEGER_DIGITS = QUANTITY_DIGITS - QUANTITY_PLACES
_REF_LENGTH = UsageRecord._meta.get_field("subscription_ref").max_length
_TEXT_FIELDS = {  # field -> max length, as stored
    "external_id": UsageRecord._meta.get_field("external_id").max_length,
    "usage_type": UsageRecord._meta.get_field("usage_type_code").max_length,
    "unit": UsageRecord._meta.get_field("unit").max_length,
    "service_identifier": UsageRecord._meta.get_field("service_identifier").max_length,
}


@dataclass
class UsageAnswer:
    """The answer for one record of a batch."""

    index: int
    external_id: str
    outcome: str  # created | duplicate | rejected | invalid | conflict
    id: int | None = None
    status: str | None = None  # the stored record's status (none for invalid)
    code: str = ""
    message: str = ""
    fields: dict[str, list[str]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "external_id": self.external_id,
            "outcome": self.outcome,
            "id": self.id,
            "status": self.status,
            "code": self.code,
            "message": self.message,
            "fields": self.fields,
        }


def usage_counts(answers: Iterable[UsageAnswer]) -> dict[str, int]:
    """How many records of a batch came to each outcome (every outcome present, zeros included)."""
    counts = Counter(answer.outcome for answer in answers)
    return {outcome: counts.get(outcome, 0) for outcome in OUTCOMES}


# --- validation of one record (shape only) -----------------------------------------------------------------


@dataclass(slots=True)
class _Usage:
    """A well-formed record (or a stored rejected one), ready to be matched."""

    external_id: str
    usage_type_code: str
    quantity: Decimal
    unit: str
    event_time: dt.datetime
    event_date: dt.date
    service_identifier: str  # as sent ("" when not sent)
    subscription_ref: str  # as sent ("" when not sent)


@dataclass(slots=True)
class _Match:
    """What matching found: the subscription for an accepted record, or why it is rejected."""

    usage_type_id: int | None
    subscription: tuple | None = None  # a _SUB_FIELDS row
    code: str = ""
    reason: str = ""


def _text(raw: dict[str, Any], name: str, errors: dict[str, list[str]], *, required: bool) -> str:
    value = raw.get(name)
    if isinstance(value, int) and not isinstance(value, bool) and name == "external_id":
        value = str(value)  # ids are often numbers in the sender's system
    if value is None or value == "":
        if required:
            errors[name] = ["This field is required."]
        return ""
    if not isinstance(value, str):
        errors[name] = ["Must be a string."]
        return ""
    value = value.strip()
    if not value and required:
        errors[name] = ["This field may not be blank."]
    elif "\x00" in value:  # PostgreSQL text cannot hold it: refuse it here, not with a failed batch
        errors[name] = ["Must not contain NUL characters."]
    elif len(value) > _TEXT_FIELDS[name]:
        errors[name] = [f"At most {_TEXT_FIELDS[name]} characters."]
    return value


def _quantity(raw: dict[str, Any], errors: dict[str, list[str]]) -> Decimal:
    value = raw.get("quantity")
    if value is None or value == "":
        errors["quantity"] = ["This field is required."]
        return Decimal(0)
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        errors["quantity"] = ["A decimal number is required."]
        return Decimal(0)
    try:
        quantity = Decimal(value.strip() if isinstance(value, str) else str(value))
    except InvalidOperation:
        errors["quantity"] = ["A decimal number is required."]
        return Decimal(0)
    if not quantity.is_finite():
        errors["quantity"] = ["A decimal number is required."]
    elif quantity < 0:
        errors["quantity"] = ["Must not be negative."]
    elif quantity.normalize().as_tuple().exponent < -QUANTITY_PLACES:  # type: ignore[operator]
        errors["quantity"] = [f"At most {QUANTITY_PLACES} decimal places."]
    elif quantity.adjusted() >= _MAX_INTEGER_DIGITS:
        errors["quantity"] = [f"At most {_MAX_INTEGER_DIGITS} digits before the decimal point."]
    return quantity


def _event_time(raw: dict[str, Any], errors: dict[str, list[str]]) -> dt.datetime | None:
    value = raw.get("event_time")
    if value is None or value == "":
        errors["event_time"] = ["This field is required."]
        return None
    if not isinstance(value, str):
        errors["event_time"] = ["An ISO 8601 date and time with offset is required."]
        return None
    try:
        when = dt.datetime.fromisoformat(value.strip())
    except ValueError:
        errors["event_time"] = ["Not an ISO 8601 date and time, e.g. 2026-06-05T14:03:00+02:00."]
        return None
    if when.tzinfo is None or when.utcoffset() is None:
        errors["event_time"] = ["Give the offset (+02:00, Z): the time is ambiguous without it."]
        return None
    return when


def _subscription_ref(raw: dict[str, Any], errors: dict[str, list[str]]) -> str:
    value = raw.get("subscription_id")
    if value is None or value == "":
        return ""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        errors["subscription_id"] = ["A subscription id (a positive whole number) is required."]
        return ""
    text = str(value).strip()
    if not text.isascii() or not text.isdigit() or int(text) <= 0 or len(text) > 18:
        errors["subscription_id"] = ["A subscription id (a positive whole number) is required."]
        return ""
    return str(int(text))


def _parse(raw: Any, business_tz: dt.tzinfo) -> _Usage | dict[str, list[str]]:
    """The record, or its field errors."""
    if not isinstance(raw, dict):
        return {"non_field_errors": ["Each record is an object."]}
    errors: dict[str, list[str]] = {}
    external_id = _text(raw, "external_id", errors, required=True)
    usage_type = _text(raw, "usage_type", errors, required=True)
    quantity = _quantity(raw, errors)
    unit = _text(raw, "unit", errors, required=True)
    when = _event_time(raw, errors)
    identifier = _text(raw, "service_identifier", errors, required=False)
    ref = _subscription_ref(raw, errors)
    if not identifier and not ref and not errors.keys() & {"service_identifier", "subscription_id"}:
        errors["non_field_errors"] = ["Name the subscription: subscription_id or service_identifier."]
    if errors or when is None:
        return errors
    return _Usage(
        external_id=external_id,
        usage_type_code=usage_type,
        quantity=quantity,
        unit=unit,
        event_time=when,
        event_date=when.astimezone(business_tz).date(),
        service_identifier=identifier,
        subscription_ref=ref,
    )


# The shape nearly every record has: plain strings, a plain decimal, a time with its offset. ``_parse_plain``
# takes it in a few checks; anything else (a number as external id, padding, an error to report...) goes
# through ``_parse``, which decides and words every error. Both give the same _Usage for a plain record.
_PLAIN_QUANTITY = re.compile(rf"[0-9]{{1,{_MAX_INTEGER_DIGITS}}}(?:\.[0-9]{{0,{QUANTITY_PLACES}}})?")
_MAX_ID, _MAX_TYPE, _MAX_UNIT, _MAX_IDENTIFIER = (
    _TEXT_FIELDS["external_id"], _TEXT_FIELDS["usage_type"], _TEXT_FIELDS["unit"],
    _TEXT_FIELDS["service_identifier"],
)  # fmt: skip


def _plain_text(value: Any, max_length: int) -> bool:
    return (
        type(value) is str
        and 0 < len(value) <= max_length
        and not value[0].isspace()
        and not value[-1].isspace()
        and "\x00" not in value
    )


def _parse_plain(raw: Any, business_tz: dt.tzinfo) -> _Usage | None:
    """The record if it has the plain shape (comment above), else None."""
    if type(raw) is not dict:
        return None
    get = raw.get
    external_id, usage_type, unit = get("external_id"), get("usage_type"), get("unit")
    quantity, when, identifier, ref = (
        get("quantity"),
        get("event_time"),
        get("service_identifier"),
        get("subscription_id"),
    )
    if not (
        _plain_text(external_id, _MAX_ID)
        and _plain_text(usage_type, _MAX_TYPE)
        and _plain_text(unit, _MAX_UNIT)
    ):
        return None
    if type(quantity) is not str or _PLAIN_QUANTITY.fullmatch(quantity) is None:
        return None
    if identifier is None or identifier == "":
        identifier = ""
    elif not _plain_text(identifier, _MAX_IDENTIFIER):
        return None
    if ref is None or ref == "":
        ref = ""
    elif type(ref) is int and 0 < ref < 10**18:
        ref = str(ref)
    else:
        return None
    if not identifier and not ref:
        return None
    if type(when) is not str or not when or when[0].isspace() or when[-1].isspace():
        return None
    try:
        event_time = dt.datetime.fromisoformat(when)
    except ValueError:
        return None
    if event_time.tzinfo is None or event_time.utcoffset() is None:
        return None
    return _Usage(
        external_id=external_id,
        usage_type_code=usage_type,
        quantity=Decimal(quantity),
        unit=unit,
        event_time=event_time,
        event_date=event_time.astimezone(business_tz).date(),
        service_identifier=identifier,
        subscription_ref=ref,
    )


def _raw_external_id(raw: Any) -> str:
    value = raw.get("external_id") if isinstance(raw, dict) else None
    return str(value)[:100] if isinstance(value, (str, int)) and not isinstance(value, bool) else ""


# --- matching (shared by ingest and reprocess) -------------------------------------------------------------

_SUB_FIELDS = ("id", "account_id", "price_plan_id", "service_identifier", "start_date", "end_date")
_ID, _ACCOUNT, _PLAN, _IDENTIFIER, _START, _END = range(6)


def _covers(sub: tuple, day: dt.date) -> bool:
    return sub[_START] <= day and (sub[_END] is None or day <= sub[_END])


def _dates(sub: tuple) -> str:
    end = sub[_END].isoformat() if sub[_END] else "open-ended"
    return f"{sub[_START].isoformat()} to {end}"


def _restricting_biller(source: str, biller: Biller | None) -> Biller | None:
    """The external biller whose accounts bound what ``source`` may reach, or None for no bound."""
    if biller is None:
        biller = Biller.objects.filter(code=source).first()
    if biller is None or biller.kind == Biller.Kind.INTERNAL:
        return None
    return biller


def _one_of(model: type[Model], name: str, values: set) -> Q | RawSQL:
    """``name`` is one of ``values``: on PostgreSQL as ``= ANY(array)``, one parameter however many values
    (an IN list of a thousand placeholders costs more to build and send than the query costs to run)."""
    if connection.vendor != "postgresql":
        return Q(**{f"{name}__in": values})
    field = model._meta.pk if name == "pk" else model._meta.get_field(name)
    column = f"{connection.ops.quote_name(model._meta.db_table)}.{connection.ops.quote_name(field.column)}"
    array_type = "bigint" if field.get_internal_type() in ("AutoField", "BigAutoField") else "text"
    return RawSQL(f"{column} = ANY(%s::{array_type}[])", [list(values)], output_field=BooleanField())


def _match_all(usages: Sequence[_Usage], restrict_to: Biller | None) -> list[_Match]:
    """Match a batch with a fixed number of queries, whatever its size."""
    types = {
        code: (pk, unit)
        for code, pk, unit in UsageType.objects.filter(
            code__in={u.usage_type_code for u in usages}
        ).values_list("code", "id", "unit")
    }
    ids = {int(u.subscription_ref) for u in usages if u.subscription_ref}
    identifiers = {u.service_identifier for u in usages if u.service_identifier and not u.subscription_ref}
    by_id: dict[int, tuple] = {}
    by_identifier: dict[str, list[tuple]] = defaultdict(list)
    if ids or identifiers:
        # One query for both ways of naming a subscription, bounded to the biller's accounts in SQL.
        wanted = _one_of(Subscription, "pk", ids) | _one_of(Subscription, "service_identifier", identifiers)
        subscriptions = Subscription.objects.filter(wanted)
        if restrict_to is not None:
            subscriptions = subscriptions.filter(account__in=accounts_for_biller(biller=restrict_to))
        for row in subscriptions.order_by("start_date", "id").values_list(*_SUB_FIELDS):
            if row[_ID] in ids:
                by_id[row[_ID]] = row
            if row[_IDENTIFIER] in identifiers:
                by_identifier[row[_IDENTIFIER]].append(row)
    plans = {row[_PLAN] for row in by_id.values()}
    plans.update(row[_PLAN] for rows in by_identifier.values() for row in rows)
    priced = set(
        PlanComponent.objects.filter(
            plan_id__in=plans, kind=PlanComponent.Kind.USAGE, usage_type__isnull=False
        ).values_list("plan_id", "usage_type_id")
    )
    return [_match_one(u, types, by_id, by_identifier, priced) for u in usages]


def _match_one(usage: _Usage, types, by_id, by_identifier, priced) -> _Match:
    usage_type = types.get(usage.usage_type_code)
    if usage_type is None:
        return _Match(None, code=UNKNOWN_USAGE_TYPE, reason=f"No usage type {usage.usage_type_code!r}.")
    type_id, unit = usage_type
    if usage.unit != unit:
        return _Match(
            type_id,
            code=WRONG_UNIT,
            reason=f"Usage type {usage.usage_type_code!r} is measured in {unit!r}, not {usage.unit!r}.",
        )
    day = usage.event_date
    if usage.subscription_ref:
        sub = by_id.get(int(usage.subscription_ref))
        if sub is None:
            return _Match(
                type_id, code=UNKNOWN_SUBSCRIPTION, reason=f"No subscription {usage.subscription_ref}."
            )
        if usage.service_identifier and usage.service_identifier != sub[_IDENTIFIER]:
            return _Match(
                type_id,
                code=IDENTIFIER_MISMATCH,
                reason=(
                    f"Subscription {sub[_ID]} is for service {sub[_IDENTIFIER]!r}, "
                    f"not {usage.service_identifier!r}."
                ),
            )
        if not _covers(sub, day):
            return _Match(
                type_id,
                code=OUTSIDE_SUBSCRIPTION_DATES,
                reason=f"The event's day {day} is outside subscription {sub[_ID]} ({_dates(sub)}).",
            )
    else:
        covering = [row for row in by_identifier.get(usage.service_identifier, ()) if _covers(row, day)]
        if not covering:
            return _Match(
                type_id,
                code=NO_SUBSCRIPTION,
                reason=f"No subscription for service {usage.service_identifier!r} on {day.isoformat()}.",
            )
        if len(covering) > 1:
            listed = ", ".join(str(row[_ID]) for row in covering)
            return _Match(
                type_id,
                code=AMBIGUOUS_SUBSCRIPTION,
                reason=(
                    f"Subscriptions {listed} all cover service {usage.service_identifier!r} on "
                    f"{day.isoformat()}; send subscription_id."
                ),
            )
        (sub,) = covering
    if (sub[_PLAN], type_id) not in priced:
        return _Match(
            type_id,
            code=USAGE_NOT_PRICED,
            reason=f"The plan of subscription {sub[_ID]} has no component for {usage.usage_type_code!r}.",
        )
    return _Match(type_id, subscription=sub)


def _apply(record: UsageRecord, match: _Match, usage: _Usage) -> None:
    """Set the record's matching fields from ``match``."""
    record.usage_type_id = match.usage_type_id
    if match.subscription is not None:
        record.subscription_id = match.subscription[_ID]
        record.service_identifier = usage.service_identifier or match.subscription[_IDENTIFIER]
        record.status = UsageRecord.Status.ACCEPTED
        record.rejection_code = record.rejection_reason = ""
    else:
        # A rejected record holds no subscription: it is matched from scratch when reprocessed.
        record.subscription_id = None
        record.service_identifier = usage.service_identifier
        record.status = UsageRecord.Status.REJECTED
        record.rejection_code = match.code
        record.rejection_reason = match.reason[:300]


# --- ingest ------------------------------------------------------------------------------------------------


def _differences(stored: UsageRecord, usage: _Usage) -> dict[str, list[str]]:
    """The fields in which ``usage`` differs from the record received before under its external id."""
    pairs = {
        "usage_type": (stored.usage_type_code, usage.usage_type_code),
        "quantity": (stored.quantity, usage.quantity),
        "unit": (stored.unit, usage.unit),
        "event_time": (stored.event_time, usage.event_time),
        "subscription_id": (stored.subscription_ref, usage.subscription_ref),
    }
    fields = {
        name: [f"Received before with {_shown(before)}; this record says {_shown(now)}."]
        for name, (before, now) in pairs.items()
        if before != now
    }
    # A record sent by subscription id alone gets the subscription's identifier when it is matched.
    sent_identifier = usage.service_identifier
    if sent_identifier != stored.service_identifier and (sent_identifier or not stored.subscription_ref):
        before, now = _shown(stored.service_identifier), _shown(sent_identifier)
        fields["service_identifier"] = [f"Received before with {before}; this record says {now}."]
    return fields


def _shown(value: Any) -> str:
    if value in ("", None):
        return "nothing"
    if isinstance(value, Decimal):
        return f"{value.normalize():f}"
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return repr(value)


def _seen_answer(index: int, stored: UsageRecord, usage: _Usage) -> UsageAnswer:
    """The answer for a record whose external id was received before: a duplicate or a conflict."""
    differences = _differences(stored, usage)
    if differences:
        return UsageAnswer(
            index=index,
            external_id=usage.external_id,
            outcome=CONFLICT,
            id=stored.pk,
            status=stored.rating_status,
            code="external_id_conflict",
            message=(
                f"External id {usage.external_id!r} was already received from this source with other "
                "content; nothing changed. Send a correction under a new external id."
            ),
            fields=differences,
        )
    return UsageAnswer(
        index=index,
        external_id=usage.external_id,
        outcome=DUPLICATE,
        id=stored.pk,
        status=stored.rating_status,
        code=stored.rejection_code,
        message=stored.rejection_reason,
    )


def _stored_answer(index: int, record: UsageRecord) -> UsageAnswer:
    rejected = record.status == UsageRecord.Status.REJECTED
    return UsageAnswer(
        index=index,
        external_id=record.external_id,
        outcome=REJECTED if rejected else CREATED,
        id=record.pk,
        status=record.status,
        code=record.rejection_code,
        message=record.rejection_reason,
    )


def _existing(source: str, external_ids: Iterable[str]) -> dict[str, UsageRecord]:
    return {
        record.external_id: record
        for record in UsageRecord.objects.filter(
            source=source, external_id__in=list(external_ids)
        ).select_related("rating")
    }


_QUEUED = ("usage_record", "subscription", "event_date", "usage_type", "quantity")


def _queue_for_rating(entries: Iterable[tuple]) -> None:
    """Put the ACCEPTED ones of these stored records on the waiting list that rating reads. Each entry:
    (id, status, subscription id, event day, usage type id, quantity)."""
    insert_rows(UsageToRate, _QUEUED, (e[:1] + e[2:] for e in entries if e[1] == UsageRecord.Status.ACCEPTED))


def _entries(records: Iterable[UsageRecord]) -> Iterator[tuple]:
    for r in records:
        yield (r.pk, r.status, r.subscription_id, r.event_date, r.usage_type_id, r.quantity)


# The columns a new record is inserted with; any other column (a later one) takes its field's default.
_INSERTED = (
    "source", "external_id", "subscription", "service_identifier", "usage_type_code", "usage_type",
    "quantity", "unit", "event_time", "event_date", "status", "rejection_code", "rejection_reason",
    "subscription_ref", "received_at",
)  # fmt: skip
_statements: dict[str, Any] = {}


def _insert_statements() -> dict[str, Any]:
    """The SQL of ``_insert_new`` (built once) and the values of the columns ingest does not set."""
    if not _statements:
        meta = UsageRecord._meta
        quote = connection.ops.quote_name
        others = [f for f in meta.concrete_fields if not f.primary_key and f.name not in _INSERTED]
        fields = [meta.get_field(name) for name in _INSERTED] + others
        table, pk = quote(meta.db_table), quote(meta.pk.column)
        columns = ", ".join(quote(f.column) for f in fields)
        arrays = ", ".join(f"%s::{f.db_type(connection)}[]" for f in fields)
        source, external_id = (
            quote(meta.get_field("source").column),
            quote(meta.get_field("external_id").column),
        )
        _statements.update(
            copy=f"COPY {table} ({pk}, {columns}) FROM STDIN (FORMAT BINARY)",
            # Binary rows cost the sender half what text rows cost; each value goes as its column's type.
            types=[re.sub(r"\(.*\)", "", f.db_type(connection)).strip() for f in [meta.pk, *fields]],
            insert=(
                f"INSERT INTO {table} ({columns}) SELECT * FROM unnest({arrays}) "
                f"ON CONFLICT ({source}, {external_id}) DO NOTHING RETURNING {pk}, {external_id}"
            ),
            defaults=tuple(f.get_default() for f in others),
        )
    return _statements


def _insert_new(rows: list[tuple]) -> dict[str, int]:
    """Insert the rows (values in ``_INSERTED`` order, external ids distinct); skip those whose (source,
    external id) is stored already, by an earlier batch or a concurrent one (the unique index waits for that
    one's commit). Returns the id of each row inserted, by external id.

    The rows go in with one binary COPY (ids drawn from the sequence first), the cheapest way in for both
    sides. If an external id is stored already (a resend), the COPY fails on the unique index, its savepoint
    is rolled back, and one INSERT ... ON CONFLICT DO NOTHING stores the new ones.
    """
    sql = _insert_statements()
    defaults = sql["defaults"]
    ids = next_ids(UsageRecord, len(rows))
    with connection.cursor() as cursor:
        try:
            with (
                transaction.atomic(),
                connection.wrap_database_errors,
                cursor.cursor.copy(sql["copy"]) as copy,
            ):
                copy.set_types(sql["types"])
                for pk, row in zip(ids, rows, strict=True):
                    copy.write_row((pk, *row, *defaults))
        except IntegrityError:
            pass
        else:
            return {row[1]: pk for pk, row in zip(ids, rows, strict=True)}
        count = len(rows)
        params: list[Any] = [list(column) for column in zip(*rows, strict=True)]
        params += [[value] * count for value in defaults]
        cursor.execute(sql["insert"], params)
        return {external_id: pk for pk, external_id in cursor.fetchall()}


def _insert_one_by_one(
    source: str, fresh: list[tuple[int, _Usage]], rows: list[UsageRecord], answers: list
) -> dict[str, UsageRecord]:
    """Insert each row in its own savepoint; return the record stored under each external id."""
    stored_now = {}
    for (index, usage), record in zip(fresh, rows, strict=True):
        record.pk = None
        try:
            with transaction.atomic():
                record.save(force_insert=True)
        except IntegrityError:
            stored = UsageRecord.objects.select_related("rating").get(
                source=source, external_id=usage.external_id
            )
            answers[index] = _seen_answer(index, stored, usage)
            stored_now[usage.external_id] = stored
        else:
            _queue_for_rating(_entries([record]))
            answers[index] = _stored_answer(index, record)
            stored_now[usage.external_id] = record
    return stored_now


@transaction.atomic
def usage_records_ingest(
    *, records: list[Any], source: str, actor: Any, biller: Biller | None = None
) -> list[UsageAnswer]:
    """Store a batch of usage records from ``source``; one answer per record, in order (module docstring).

    ``biller``: the calling API client's biller (its code is normally the source); None for staff and file
    imports, when a source named after an external biller is still bounded by that biller's accounts.
    ``actor`` is accepted for symmetry with other services: a record carries its source and receipt time,
    so ingest writes no audit rows of its own.
    """
    source = (source or "").strip()
    if not source or len(source) > MAX_SOURCE_LENGTH:
        raise ValueError(f"A source of 1 to {MAX_SOURCE_LENGTH} characters is required.")
    business_tz = timezone.get_default_timezone()
    answers: list[UsageAnswer | None] = [None] * len(records)
    fresh: list[tuple[int, _Usage]] = []  # the first record of the batch with each external id
    first_in_batch: set[str] = set()
    repeats: list[tuple[int, _Usage]] = []  # an external id a second time in this batch
    for index, raw in enumerate(records):
        result = _parse_plain(raw, business_tz) or _parse(raw, business_tz)
        if isinstance(result, _Usage):
            if result.external_id in first_in_batch:
                repeats.append((index, result))
            else:
                first_in_batch.add(result.external_id)
                fresh.append((index, result))
        else:
            answers[index] = UsageAnswer(
                index=index,
                external_id=_raw_external_id(raw),
                outcome=INVALID,
                code="invalid",
                message="The record is not valid; nothing was stored.",
                fields=result,
            )
    if fresh:
        repeated = {usage.external_id for _, usage in repeats}
        store = _store_batch if connection.vendor == "postgresql" else _store_batch_checked
        stored_now = store(source, _restricting_biller(source, biller), fresh, repeated, answers)
        for index, usage in repeats:
            answers[index] = _seen_answer(index, stored_now[usage.external_id], usage)
    return answers  # type: ignore[return-value]  (every record has its answer now)


_STATUS, _CODE, _REASON = (
    _INSERTED.index("status"),
    _INSERTED.index("rejection_code"),
    _INSERTED.index("rejection_reason"),
)
_EXTERNAL_ID, _SUBSCRIPTION, _DAY, _TYPE, _QUANTITY = (
    _INSERTED.index(name) for name in ("external_id", "subscription", "event_date", "usage_type", "quantity")
)


def _row(source: str, usage: _Usage, match: _Match, received_at: dt.datetime) -> tuple:
    """The new record's values in ``_INSERTED`` order (what ``_apply`` sets on a model instance)."""
    sub = match.subscription
    if sub is not None:
        return (
            source, usage.external_id, sub[_ID], usage.service_identifier or sub[_IDENTIFIER],
            usage.usage_type_code, match.usage_type_id, usage.quantity, usage.unit, usage.event_time,
            usage.event_date, UsageRecord.Status.ACCEPTED, "", "", usage.subscription_ref, received_at,
        )  # fmt: skip
    # A rejected record holds no subscription: it is matched from scratch when reprocessed.
    return (
        source, usage.external_id, None, usage.service_identifier, usage.usage_type_code,
        match.usage_type_id, usage.quantity, usage.unit, usage.event_time, usage.event_date,
        UsageRecord.Status.REJECTED, match.code, match.reason[:300], usage.subscription_ref, received_at,
    )  # fmt: skip


def _store_batch(
    source: str,
    restrict_to: Biller | None,
    fresh: list[tuple[int, _Usage]],
    repeated: set[str],
    answers: list,
) -> dict[str, UsageRecord]:
    """PostgreSQL: match the batch and insert it with one statement that skips the external ids stored
    already (the unique index decides, so there is no window between looking and inserting, and no lookup
    at all when every record is new); then answer the skipped ones from the stored rows.

    Returns the stored record of the external ids in ``repeated`` (sent twice in the batch)."""
    matches = _match_all([usage for _, usage in fresh], restrict_to)
    received_at = timezone.now()
    rows = [_row(source, usage, match, received_at) for (_, usage), match in zip(fresh, matches, strict=True)]
    ids = _insert_new(rows)
    _queue_for_rating(
        (pk, row[_STATUS], row[_SUBSCRIPTION], row[_DAY], row[_TYPE], row[_QUANTITY])
        for row in rows
        if (pk := ids.get(row[_EXTERNAL_ID])) is not None
    )
    stored_now: dict[str, UsageRecord] = {}
    skipped: list[int] = []  # positions in fresh
    for k, ((index, usage), row) in enumerate(zip(fresh, rows, strict=True)):
        pk = ids.get(usage.external_id)
        if pk is None:
            skipped.append(k)
            continue
        status = row[_STATUS]
        answers[index] = UsageAnswer(
            index=index,
            external_id=usage.external_id,
            outcome=REJECTED if status == UsageRecord.Status.REJECTED else CREATED,
            id=pk,
            status=status,
            code=row[_CODE],
            message=row[_REASON],
        )
        if usage.external_id in repeated:
            stored_now[usage.external_id] = _new_record(source, usage, matches[k], received_at, pk=pk)
    if skipped:
        found = _existing(source, [fresh[k][1].external_id for k in skipped])
        gone = []
        for k in skipped:
            index, usage = fresh[k]
            stored = found.get(usage.external_id)
            if stored is None:  # the row the insert met was rolled back or deleted since: store it now
                gone.append(k)
                continue
            answers[index] = _seen_answer(index, stored, usage)
            stored_now[usage.external_id] = stored
        if gone:
            stored_now.update(
                _insert_one_by_one(
                    source,
                    [fresh[k] for k in gone],
                    [_new_record(source, fresh[k][1], matches[k], received_at) for k in gone],
                    answers,
                )
            )
    return stored_now


def _new_record(
    source: str, usage: _Usage, match: _Match, received_at: dt.datetime, pk: int | None = None
) -> UsageRecord:
    record = UsageRecord(
        pk=pk,
        source=source,
        external_id=usage.external_id,
        usage_type_code=usage.usage_type_code,
        quantity=usage.quantity,
        unit=usage.unit,
        event_time=usage.event_time,
        event_date=usage.event_date,
        subscription_ref=usage.subscription_ref,
        received_at=received_at,
    )
    _apply(record, match, usage)
    UsageRecord.rating.related.set_cached_value(record, None)  # new: not rated (and no query to say so)
    return record


def _store_batch_checked(
    source: str,
    restrict_to: Biller | None,
    fresh: list[tuple[int, _Usage]],
    repeated: set[str],
    answers: list,
) -> dict[str, UsageRecord]:
    """Other databases (SQLite, small data): look up the external ids stored already and bulk-insert the
    others; if a concurrent request stored one of them since we looked, go one record at a time."""
    existing = _existing(source, {usage.external_id for _, usage in fresh})
    new: list[tuple[int, _Usage]] = []
    for index, usage in fresh:
        stored = existing.get(usage.external_id)
        if stored is not None:
            answers[index] = _seen_answer(index, stored, usage)
        else:
            new.append((index, usage))
    stored_now = dict(existing)
    if not new:
        return stored_now
    matches = _match_all([usage for _, usage in new], restrict_to)
    received_at = timezone.now()
    records = [_new_record(source, u, m, received_at) for (_, u), m in zip(new, matches, strict=True)]
    try:
        with transaction.atomic():
            UsageRecord.objects.bulk_create(records, batch_size=INSERT_BATCH)
    except IntegrityError:
        stored_now.update(_insert_one_by_one(source, new, records, answers))
    else:
        _queue_for_rating(_entries(records))
        for (index, usage), record in zip(new, records, strict=True):
            answers[index] = _stored_answer(index, record)
            stored_now[usage.external_id] = record
    return stored_now


# --- reprocessing ------------------------------------------------------------------------------------------


@dataclass
class ReprocessResult:
    accepted: int = 0  # matched now: ACCEPTED, rating picks them up
    rejected: int = 0  # still not matched (their code and reason are brought up to date)
    skipped: int = 0  # not rejected (accepted or rated already): left alone

    def as_dict(self) -> dict[str, int]:
        return {"accepted": self.accepted, "rejected": self.rejected, "skipped": self.skipped}

    def __str__(self) -> str:
        return (
            f"{self.accepted} accepted, {self.rejected} still rejected, {self.skipped} skipped (not rejected)"
        )


def _stored_usage(record: UsageRecord) -> _Usage:
    return _Usage(
        external_id=record.external_id,
        usage_type_code=record.usage_type_code,
        quantity=record.quantity,
        unit=record.unit,
        event_time=record.event_time,
        event_date=record.event_date,
        service_identifier=record.service_identifier,
        subscription_ref=record.subscription_ref,
    )


_MATCH_FIELDS = [
    "usage_type",
    "subscription",
    "service_identifier",
    "status",
    "rejection_code",
    "rejection_reason",
]


@transaction.atomic
def usage_records_reprocess(*, records: QuerySet[UsageRecord] | None = None, actor: Any) -> ReprocessResult:
    """Match rejected records again (after the catalog was fixed or the subscription created).

    ``records``: the records to try (an admin's selection); None for every rejected record. Records that
    are not REJECTED are skipped. Each record is matched as at ingest, under its own source's bounds; the
    ones that match become ACCEPTED (audited), the others keep REJECTED with an up-to-date reason.
    """
    result = ReprocessResult()
    if records is None:
        records = UsageRecord.objects.filter(status=UsageRecord.Status.REJECTED)
    else:
        result.skipped = records.exclude(status=UsageRecord.Status.REJECTED).count()
    ids = list(records.filter(status=UsageRecord.Status.REJECTED).order_by("pk").values_list("pk", flat=True))
    billers: dict[str, Biller | None] = {}
    for start in range(0, len(ids), REPROCESS_CHUNK):
        chunk = list(
            UsageRecord.objects.select_for_update()
            .filter(pk__in=ids[start : start + REPROCESS_CHUNK], status=UsageRecord.Status.REJECTED)
            .order_by("pk")
        )
        by_source: dict[str, list[UsageRecord]] = defaultdict(list)
        for record in chunk:
            by_source[record.source].append(record)
        changed: list[UsageRecord] = []
        for source, group in by_source.items():
            if source not in billers:
                billers[source] = _restricting_biller(source, None)
            usages = [_stored_usage(record) for record in group]
            for record, usage, match in zip(group, usages, _match_all(usages, billers[source]), strict=True):
                before = (record.status, record.rejection_code, record.rejection_reason, record.usage_type_id)
                _apply(record, match, usage)
                if record.status == UsageRecord.Status.ACCEPTED:
                    result.accepted += 1
                    audit_record(
                        actor=actor,
                        action="usage_record.reprocess",
                        obj=record,
                        before={"status": before[0], "rejection_code": before[1]},
                        after={"status": record.status, "subscription_id": record.subscription_id},
                        account_id=match.subscription[_ACCOUNT],
                    )
                else:
                    result.rejected += 1
                if before != (
                    record.status,
                    record.rejection_code,
                    record.rejection_reason,
                    record.usage_type_id,
                ):
                    changed.append(record)
        UsageRecord.objects.bulk_update(changed, _MATCH_FIELDS, batch_size=INSERT_BATCH)
        _queue_for_rating(_entries(changed))
    return result
