"""statements.records_plain: the quick way for plain statement records gives what validate_record gives,
and leaves every other record (and so every error) to it."""

from __future__ import annotations

import copy
from decimal import Decimal

import pytest

from statements.records import validate_record
from statements.records_plain import plain_statement
from tests.factories import statement_record


def _exact(value):
    """Values with their types and exact text (Decimal('40.0000') is not Decimal('40.00') in an audit)."""
    if isinstance(value, dict):
        return {k: _exact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_exact(v) for v in value]
    return (type(value), str(value))


PLAIN = [
    statement_record("NW-1", "S-1"),
    statement_record("NW-1", "S-2", previous_balance="52.10", payments="52.10", number="NW-88412"),
    statement_record(
        "NW-1", "S-3", status="paid", lines=[], usage=[], new_charges="10.00", total_due="10.00"
    ),
    statement_record("NW-1", "S-4", currency="usd"),
    statement_record(
        "NW-1",
        "S-5",
        lines=[
            {
                "type": "recurring",
                "amount": "30.00",
                "period_start": "2026-10-01",
                "period_end": "2026-10-31",
            },
            {"type": "tax", "amount": "2.48", "quantity": None, "unit_price": None},
            {"type": "adjustment", "amount": "-1.25", "tax": "0"},
        ],
        usage=[{"usage_type": "data", "quantity": "0.5", "unit": "MB", "included_quantity": "10240"}],
    ),
]


@pytest.mark.parametrize("record", PLAIN, ids=lambda r: r["external_id"])
def test_a_plain_record_gets_exactly_what_the_serializer_gives(record):
    quick = plain_statement(copy.deepcopy(record))
    assert quick is not None
    record_type, data = validate_record(copy.deepcopy(record))
    assert record_type == "statement"
    assert _exact(quick) == _exact(data)


def _changed(**changes):
    record = statement_record("NW-1", "S-1")
    for key, value in changes.items():
        if value is KeyError:
            record.pop(key)
        else:
            record[key] = value
    return record


def _line_changed(**changes):
    record = statement_record("NW-1", "S-1")
    record["lines"][0].update(changes)
    return record


NOT_PLAIN = {
    "padded text": _changed(account=" NW-1"),
    "number as external id": _changed(external_id=12),
    "amount as a JSON number": _changed(total_due=40.5),
    "leading zero": _changed(total_due="040.50"),
    "exponent": _changed(total_due="4.05E1"),
    "too many places": _changed(total_due="40.50001"),
    "does not add up": _changed(total_due="41.50"),
    "unknown currency": _changed(currency="XXQ"),
    "short date": _changed(due_date="2026-11-4"),
    "impossible date": _changed(due_date="2026-02-30"),
    "due before the statement": _changed(due_date="2026-10-01"),
    "unknown status": _changed(status="closed"),
    "missing new charges": _changed(new_charges=KeyError),
    "null payments": _changed(payments=None),
    "lines not a list": _changed(lines={"type": "usage"}),
    "line of an unknown type": _line_changed(type="fee"),
    "line amount beyond cents": _line_changed(amount="40.001"),
    "line period reversed": _line_changed(period_start="2026-10-31", period_end="2026-10-01"),
    "NUL in text": _line_changed(product="Plan\x00"),
    "repeated usage item": _changed(
        usage=[{"usage_type": "voice", "quantity": "1", "unit": "min"}] * 2,
    ),
    "negative usage": _changed(usage=[{"usage_type": "voice", "quantity": "-1", "unit": "min"}]),
    "not a statement": {"type": "balance", "account": "NW-1", "as_of": "2026-10-31T00:00:00Z"},
    "not an object": ["statement"],
}


@pytest.mark.parametrize("record", list(NOT_PLAIN.values()), ids=list(NOT_PLAIN))
def test_any_other_record_is_left_to_the_serializer(record):
    """Nothing is refused or accepted here that the serializer would judge otherwise: it judges them all."""
    assert plain_statement(copy.deepcopy(record)) is None


def test_defaults_are_the_serializers_own_objects():
    record = statement_record("NW-1", "S-1")
    for name in ("previous_balance", "payments", "adjustments"):
        record.pop(name)
    record["total_due"] = record["new_charges"] = "37.50"
    record["taxes"] = "3.00"
    record["total_due"] = "40.50"
    quick = plain_statement(copy.deepcopy(record))
    _, data = validate_record(copy.deepcopy(record))
    assert _exact(quick) == _exact(data)
    assert quick["payments"] == Decimal(0) and quick["status"] == "open"
