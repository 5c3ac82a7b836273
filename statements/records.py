"""The biller record format: one shape for what billers push (API) and what this product pulls (HTTP pull
contract, file drop). docs/biller-records.md describes it for billers.

Every record is a JSON object with a ``type``:

* ``statement``: a bill with its lines and usage summaries, created or replaced by ``external_id``;
* ``balance``: the biller's own balance of an account at a moment (a snapshot, compared with the ledger);
* ``transaction``: a payment, adjustment, refund or write-off that happened at the biller (a ledger row);
* ``usage``: usage summaries of one statement, sent after the statement.

Validation here is about the record alone: fields, amounts within the currency's minor units, totals that
add up, dates in order. Whether the account exists at the biller and bills in that currency is checked by
the services that store records (``statements.services``), because that needs the database.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from rest_framework import serializers

from billing_mgmt.money import CurrencyError, is_quantized, minor_units, validate_currency

from .models import QUANTITY_DIGITS, QUANTITY_PLACES, Statement, StatementLine

MAX_LINES = 5000  # per statement
MAX_USAGE_ITEMS = 1000  # per statement
MAX_BULK_RECORDS = 5000  # per bulk request or pulled page

RECORD_TYPES = ("statement", "balance", "transaction", "usage")


def _money(**kwargs) -> serializers.DecimalField:
    return serializers.DecimalField(max_digits=19, decimal_places=4, **kwargs)


def _quantity(**kwargs) -> serializers.DecimalField:
    return serializers.DecimalField(max_digits=QUANTITY_DIGITS, decimal_places=QUANTITY_PLACES, **kwargs)


def _text(max_length: int, **kwargs) -> serializers.CharField:
    return serializers.CharField(
        max_length=max_length, required=False, allow_blank=True, default="", **kwargs
    )


def _check_currency(value: str) -> str:
    try:
        return validate_currency(value.upper())
    except CurrencyError as exc:
        raise serializers.ValidationError(str(exc)) from None


def _minor_unit_errors(values: dict[str, Decimal | None], currency: str) -> dict[str, list[str]]:
    return {
        name: [f"{currency} amounts have at most the currency's minor units; {value} has more."]
        for name, value in values.items()
        if value is not None and not is_quantized(value, currency)
    }


class UsageItemSerializer(serializers.Serializer):
    """Usage of one kind by one service in a statement's period."""

    service_identifier = _text(100)
    usage_type = serializers.SlugField(max_length=40)
    quantity = _quantity(min_value=Decimal(0))
    unit = serializers.CharField(max_length=20)
    included_quantity = _quantity(min_value=Decimal(0), required=False, allow_null=True, default=None)


class LineSerializer(serializers.Serializer):
    type = serializers.ChoiceField(choices=StatementLine.Type.choices)
    product = _text(200)
    service_identifier = _text(100)
    description = _text(300)
    quantity = _quantity(required=False, allow_null=True, default=None)
    unit = _text(20)
    unit_price = serializers.DecimalField(
        max_digits=24, decimal_places=8, required=False, allow_null=True, default=None
    )
    amount = _money()
    tax = _money(required=False, default=Decimal(0))
    period_start = serializers.DateField(required=False, allow_null=True, default=None)
    period_end = serializers.DateField(required=False, allow_null=True, default=None)
    external_id = _text(100)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        start, end = attrs["period_start"], attrs["period_end"]
        if start and end and start > end:
            raise serializers.ValidationError({"period_end": ["The period ends before it starts."]})
        return attrs


class StatementRecordSerializer(serializers.Serializer):
    account = serializers.CharField(max_length=100, help_text="The account's reference at the biller.")
    external_id = serializers.CharField(max_length=100)
    number = _text(40, help_text="The number printed on the bill; one is assigned when left out.")
    statement_date = serializers.DateField()
    period_start = serializers.DateField()
    period_end = serializers.DateField()
    due_date = serializers.DateField()
    currency = serializers.CharField(max_length=3)
    previous_balance = _money(required=False, default=Decimal(0))
    payments = _money(required=False, default=Decimal(0))
    adjustments = _money(required=False, default=Decimal(0))
    new_charges = _money()
    taxes = _money(required=False, default=Decimal(0))
    total_due = _money()
    status = serializers.ChoiceField(
        choices=Statement.Status.choices, required=False, default=Statement.Status.OPEN
    )
    lines = LineSerializer(many=True, required=False, default=list, max_length=MAX_LINES)
    usage = UsageItemSerializer(many=True, required=False, default=list, max_length=MAX_USAGE_ITEMS)

    def validate_currency(self, value: str) -> str:
        return _check_currency(value)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        errors: dict[str, list[str]] = {}
        if attrs["period_start"] > attrs["period_end"]:
            errors["period_end"] = ["The period ends before it starts."]
        if attrs["due_date"] < attrs["statement_date"]:
            errors["due_date"] = ["The due date is before the statement date."]
        currency = attrs["currency"]
        header = ("previous_balance", "payments", "adjustments", "new_charges", "taxes", "total_due")
        errors.update(_minor_unit_errors({name: attrs[name] for name in header}, currency))
        for i, line in enumerate(attrs["lines"]):
            for name, messages in _minor_unit_errors(
                {"amount": line["amount"], "tax": line["tax"]}, currency
            ).items():
                errors[f"lines[{i}].{name}"] = messages
        if errors:
            raise serializers.ValidationError(errors)
        errors.update(_totals_errors(attrs))
        seen: dict[tuple[str, str], int] = {}
        for i, item in enumerate(attrs["usage"]):
            key = (item["service_identifier"], item["usage_type"])
            if key in seen:
                errors[f"usage[{i}].usage_type"] = [f"Repeats usage[{seen[key]}] for the same service."]
            seen.setdefault(key, i)
        line_ids: dict[str, int] = {}
        for i, line in enumerate(attrs["lines"]):
            if line["external_id"] and line["external_id"] in line_ids:
                errors[f"lines[{i}].external_id"] = [f"Repeats lines[{line_ids[line['external_id']]}]."]
            line_ids.setdefault(line["external_id"], i)
        if errors:
            raise serializers.ValidationError(errors)
        return attrs


def _totals_errors(attrs: dict[str, Any]) -> dict[str, list[str]]:
    """The statement must add up exactly: every amount is already rounded to the currency's minor unit, so
    sums of rounded amounts have no rounding left to forgive. A line's own amount may differ from its
    quantity x unit price by the rounding of that product (up to one minor unit)."""
    errors: dict[str, list[str]] = {}
    expected_total = (
        attrs["previous_balance"]
        - attrs["payments"]
        + attrs["adjustments"]
        + attrs["new_charges"]
        + attrs["taxes"]
    )
    if attrs["total_due"] != expected_total:
        errors["total_due"] = [
            f"Does not add up: previous balance - payments + adjustments + new charges + taxes "
            f"= {expected_total}, not {attrs['total_due']}."
        ]
    lines = attrs["lines"]
    if not lines:
        return errors
    charges = sum((ln["amount"] for ln in lines if ln["type"] in StatementLine.CHARGE_TYPES), Decimal(0))
    if charges != attrs["new_charges"]:
        errors["new_charges"] = [f"The charge lines add up to {charges}, not {attrs['new_charges']}."]
    taxes = sum((ln["tax"] for ln in lines), Decimal(0)) + sum(
        (ln["amount"] for ln in lines if ln["type"] == StatementLine.Type.TAX), Decimal(0)
    )
    if taxes != attrs["taxes"]:
        errors["taxes"] = [f"The lines' taxes add up to {taxes}, not {attrs['taxes']}."]
    adjustment_lines = [ln for ln in lines if ln["type"] == StatementLine.Type.ADJUSTMENT]
    if adjustment_lines:
        adjustments = sum((ln["amount"] for ln in adjustment_lines), Decimal(0))
        if adjustments != attrs["adjustments"]:
            errors["adjustments"] = [
                f"The adjustment lines add up to {adjustments}, not {attrs['adjustments']}."
            ]
    minor_unit = Decimal(1).scaleb(-minor_units(attrs["currency"]))
    for i, line in enumerate(lines):
        if line["quantity"] is None or line["unit_price"] is None:
            continue
        if abs(line["quantity"] * line["unit_price"] - line["amount"]) > minor_unit:
            errors[f"lines[{i}].amount"] = [
                f"{line['quantity']} x {line['unit_price']} is not {line['amount']} (beyond rounding)."
            ]
    return errors


class BalanceRecordSerializer(serializers.Serializer):
    account = serializers.CharField(max_length=100)
    as_of = serializers.DateTimeField()
    amount = _money(help_text="Positive: the customer owes the biller.")
    currency = serializers.CharField(max_length=3)
    external_id = _text(100)

    def validate_currency(self, value: str) -> str:
        return _check_currency(value)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        errors = _minor_unit_errors({"amount": attrs["amount"]}, attrs["currency"])
        if errors:
            raise serializers.ValidationError(errors)
        return attrs


class TransactionRecordSerializer(serializers.Serializer):
    """A movement of money at the biller. ``amount`` is as the biller states it: a payment, refund or
    write-off is a positive number; an adjustment is signed (negative is a credit to the customer)."""

    KINDS = ("payment", "adjustment", "refund", "write_off")

    account = serializers.CharField(max_length=100)
    external_id = serializers.CharField(max_length=100)
    kind = serializers.ChoiceField(choices=KINDS)
    amount = _money()
    currency = serializers.CharField(max_length=3)
    date = serializers.DateField()
    description = _text(300)
    statement = _text(100, help_text="External id of the statement it belongs to, if any.")

    def validate_currency(self, value: str) -> str:
        return _check_currency(value)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        errors = _minor_unit_errors({"amount": attrs["amount"]}, attrs["currency"])
        if attrs["amount"] == 0:
            errors["amount"] = ["The amount must not be zero."]
        elif attrs["kind"] != "adjustment" and attrs["amount"] < 0:
            errors["amount"] = [f"A {attrs['kind'].replace('_', '-')} amount is positive."]
        if errors:
            raise serializers.ValidationError(errors)
        return attrs


class UsageRecordSerializer(serializers.Serializer):
    statement = serializers.CharField(max_length=100, help_text="External id of the statement.")
    usage = UsageItemSerializer(many=True, allow_empty=False, max_length=MAX_USAGE_ITEMS)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        seen = set()
        for i, item in enumerate(attrs["usage"]):
            key = (item["service_identifier"], item["usage_type"])
            if key in seen:
                raise serializers.ValidationError(
                    {f"usage[{i}].usage_type": ["Repeats another item for the same service."]}
                )
            seen.add(key)
        return attrs


SERIALIZERS: dict[str, type[serializers.Serializer]] = {
    "statement": StatementRecordSerializer,
    "balance": BalanceRecordSerializer,
    "transaction": TransactionRecordSerializer,
    "usage": UsageRecordSerializer,
}


def flatten_errors(detail: Any, prefix: str = "") -> dict[str, list[str]]:
    """DRF's nested errors as {"lines[3].amount": ["..."]}: the record's field is named in one string."""
    out: dict[str, list[str]] = {}
    if isinstance(detail, dict):
        for key, value in detail.items():
            name = key if key != "non_field_errors" else ""
            path = f"{prefix}.{name}" if prefix and name else (prefix or name or "non_field_errors")
            out.update(flatten_errors(value, path))
    elif isinstance(detail, list):
        if detail and all(isinstance(v, str) for v in detail):
            out.setdefault(prefix or "non_field_errors", []).extend(str(v) for v in detail)
        else:
            for i, value in enumerate(detail):
                if value:
                    out.update(flatten_errors(value, f"{prefix}[{i}]"))
    else:
        out.setdefault(prefix or "non_field_errors", []).append(str(detail))
    return out


def validate_record(record: Any, *, default_type: str | None = None) -> tuple[str, dict[str, Any]]:
    """Validate one record. Returns (type, validated data); raises RecordInvalid with flat field errors."""
    if not isinstance(record, dict):
        raise RecordInvalid({"non_field_errors": ["A record is a JSON object."]})
    record_type = record.get("type", default_type)
    if record_type not in SERIALIZERS:
        raise RecordInvalid({"type": [f"Must be one of: {', '.join(RECORD_TYPES)}."]})
    serializer = SERIALIZERS[record_type](data=record)
    if not serializer.is_valid():
        raise RecordInvalid(flatten_errors(serializer.errors))
    return record_type, dict(serializer.validated_data)


class RecordInvalid(Exception):
    def __init__(self, fields: dict[str, list[str]]):
        super().__init__("The record is not valid.")
        self.fields = fields
