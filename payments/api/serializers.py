"""Payments API serializers: payments with their allocations, adjustments, refunds and write-offs (output); a
payment received elsewhere, a reversal, a refund and a write-off (input). Amounts are decimal strings in the
currency's minor units."""

from __future__ import annotations

import re
from typing import Any

from rest_framework import serializers

from billing_mgmt.money import AMOUNT_DECIMAL_PLACES, AMOUNT_MAX_DIGITS, CurrencyError, validate_currency
from statements.api.serializers import AmountField

from ..models import Adjustment, Payment, PaymentAllocation, Refund, WriteOff

# Field names that would carry card data: never accepted (the processor holds cards; this product keeps its
# token, brand and last four digits only).
_CARD_FIELD = re.compile(
    r"cvv|cvc|csc|cid$|security_?code|card_?(number|num|no)$|^pan$|primary_?account_?number|track_?data",
    re.IGNORECASE,
)
CARD_FIELD_MESSAGE = (
    "Card numbers and security codes are never accepted here: card details go to the payment processor. "
    "Leave this field out."
)


def card_fields(body: Any) -> dict[str, list[str]]:
    """The fields of a request body named like card data (a full number, a CVV), with the message."""
    if not isinstance(body, dict):
        return {}
    return {
        str(key): [CARD_FIELD_MESSAGE]
        for key in body
        if _CARD_FIELD.search(str(key).replace("-", "_").strip())
    }


# --- output ------------------------------------------------------------------------------------------------


class AllocationSerializer(serializers.ModelSerializer):
    statement = serializers.CharField(source="statement.number", help_text="The statement's number.")
    statement_id = serializers.IntegerField(help_text="The statement's id.")
    amount = AmountField(currency_from="payment.currency")
    reversed = serializers.BooleanField(help_text="Taken back by the payment's reversal.")

    class Meta:
        model = PaymentAllocation
        fields = ["statement", "statement_id", "amount", "reversed"]
        read_only_fields = fields


class PaymentSerializer(serializers.ModelSerializer):
    account = serializers.CharField(source="account.number", help_text="The account (bill unit) paid.")
    amount = AmountField(help_text="Received (positive).")
    unallocated = AmountField(help_text="What no open statement took: a credit on the account.")
    method = serializers.SerializerMethodField(
        help_text="How it was paid, e.g. 'Visa •••• 4242'; null: none."
    )
    reversed_at = serializers.SerializerMethodField(help_text="When the reversal was posted; null: not.")
    allocations = AllocationSerializer(many=True, help_text="The statements it settled, oldest first.")

    class Meta:
        model = Payment
        fields = [
            "id",
            "account",
            "amount",
            "currency",
            "payment_date",
            "reference",
            "method",
            "channel",
            "status",
            "unallocated",
            "allocations",
            "reversal_reason",
            "reversed_at",
            "created_at",
        ]
        read_only_fields = fields

    def get_method(self, payment: Payment) -> str | None:
        return str(payment.method) if payment.method_id else None

    def get_reversed_at(self, payment: Payment) -> str | None:
        if payment.reversal_id is None:
            return None
        return serializers.DateTimeField().to_representation(payment.reversal.posted_at)


class AdjustmentSerializer(serializers.ModelSerializer):
    account = serializers.CharField(source="account.number")
    amount = AmountField(help_text="Positive; `direction` gives the sign.")
    signed_amount = AmountField(help_text="What it does to the balance: negative for a credit.")
    reason = serializers.CharField(source="reason.code", help_text="The reason code.")
    reason_name = serializers.CharField(source="reason.name")
    statement = serializers.SerializerMethodField(help_text="The statement's number it is for; null: none.")
    statement_line = serializers.IntegerField(
        source="statement_line_id", allow_null=True, help_text="The statement line's id; null: none."
    )
    maker = serializers.SerializerMethodField(help_text="Who made it (staff callers only; null for billers).")
    checker = serializers.SerializerMethodField(help_text="Who approved or rejected it (staff callers only).")
    decision_comment = serializers.SerializerMethodField(help_text="The supervisor's comment (staff only).")

    class Meta:
        model = Adjustment
        fields = [
            "id",
            "account",
            "direction",
            "amount",
            "signed_amount",
            "currency",
            "reason",
            "reason_name",
            "note",
            "statement",
            "statement_line",
            "status",
            "maker",
            "checker",
            "decision_comment",
            "decided_at",
            "created_at",
        ]
        read_only_fields = fields

    def _staff(self) -> bool:
        return self.context.get("biller") is None

    def get_statement(self, adjustment: Adjustment) -> str | None:
        return adjustment.statement.number if adjustment.statement_id else None

    def get_maker(self, adjustment: Adjustment) -> str | None:
        return adjustment.maker.get_username() if self._staff() else None

    def get_checker(self, adjustment: Adjustment) -> str | None:
        if not self._staff() or adjustment.checker_id is None:
            return None
        return adjustment.checker.get_username()

    def get_decision_comment(self, adjustment: Adjustment) -> str:
        return adjustment.decision_comment if self._staff() else ""


class _EnteredBySerializer(serializers.ModelSerializer):
    """Shows who entered the row to staff callers only (null for billers and for other systems)."""

    def get_created_by(self, obj) -> str | None:
        if self.context.get("biller") is not None or obj.created_by_id is None:
            return None
        return obj.created_by.get_username()


class RefundSerializer(_EnteredBySerializer):
    account = serializers.CharField(source="account.number", help_text="The account (bill unit) refunded.")
    amount = AmountField(help_text="Paid back out of the credit (positive).")
    method = serializers.SerializerMethodField(
        help_text="Where it was paid back, e.g. 'Visa •••• 4242'; null: none recorded."
    )
    created_by = serializers.SerializerMethodField(help_text="Who entered it (staff callers only).")

    class Meta:
        model = Refund
        fields = ["id", "account", "amount", "currency", "method", "reason", "created_by", "created_at"]
        read_only_fields = fields

    def get_method(self, refund: Refund) -> str | None:
        return str(refund.method) if refund.method_id else None


class WriteOffSerializer(_EnteredBySerializer):
    account = serializers.CharField(source="account.number", help_text="The account (bill unit).")
    amount = AmountField(help_text="Taken off what the account owed (positive).")
    created_by = serializers.SerializerMethodField(help_text="The supervisor who wrote it off (staff only).")

    class Meta:
        model = WriteOff
        fields = ["id", "account", "amount", "currency", "reason", "created_by", "created_at"]
        read_only_fields = fields


# --- input -------------------------------------------------------------------------------------------------


class StrictDecimalField(serializers.DecimalField):
    """A decimal sent as a string (or a whole number): a JSON float may already have lost its exact value."""

    def to_internal_value(self, data):
        if isinstance(data, float):
            raise serializers.ValidationError('Send the amount as a decimal string, e.g. "10.00".')
        return super().to_internal_value(data)


class PaymentCreateSerializer(serializers.Serializer):
    account = serializers.CharField(max_length=40, help_text="The account number.")
    amount = StrictDecimalField(
        max_digits=AMOUNT_MAX_DIGITS,
        decimal_places=AMOUNT_DECIMAL_PLACES,
        help_text='More than zero, in the currency\'s minor units at most, as a string: "10.00".',
    )
    currency = serializers.CharField(max_length=3, help_text="ISO 4217; the account's billing currency.")
    payment_date = serializers.DateField(required=False, help_text="When it was received; default today.")
    reference = serializers.CharField(
        max_length=100,
        required=False,
        allow_blank=True,
        default="",
        help_text="Your receipt or transfer reference (never a card number).",
    )
    statement = serializers.CharField(
        max_length=40,
        required=False,
        allow_null=True,
        allow_blank=True,
        default=None,
        help_text="The number of a statement to settle first; then the oldest open ones.",
    )

    def validate_currency(self, value: str) -> str:
        try:
            return validate_currency(value)
        except CurrencyError as exc:
            raise serializers.ValidationError(str(exc)) from exc


class PaymentReverseSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=300, help_text="Why, e.g. 'Cheque bounced'.")


class _BalanceEntrySerializer(serializers.Serializer):
    account = serializers.CharField(max_length=40, help_text="The account number.")
    amount = StrictDecimalField(
        max_digits=AMOUNT_MAX_DIGITS,
        decimal_places=AMOUNT_DECIMAL_PLACES,
        help_text='More than zero, in the currency\'s minor units at most, as a string: "10.00".',
    )
    currency = serializers.CharField(max_length=3, help_text="ISO 4217; the account's billing currency.")
    reason = serializers.CharField(max_length=300, help_text="Why (never a card number).")

    def validate_currency(self, value: str) -> str:
        try:
            return validate_currency(value)
        except CurrencyError as exc:
            raise serializers.ValidationError(str(exc)) from exc


class RefundCreateSerializer(_BalanceEntrySerializer):
    amount = StrictDecimalField(
        max_digits=AMOUNT_MAX_DIGITS,
        decimal_places=AMOUNT_DECIMAL_PLACES,
        help_text='Paid back: more than zero and at most the account\'s credit, as a string: "10.00".',
    )
    method = serializers.IntegerField(
        required=False,
        allow_null=True,
        default=None,
        help_text="The id of the account's payment method it is paid back to; null: none recorded.",
    )


class WriteOffCreateSerializer(_BalanceEntrySerializer):
    amount = StrictDecimalField(
        max_digits=AMOUNT_MAX_DIGITS,
        decimal_places=AMOUNT_DECIMAL_PLACES,
        help_text='Written off: more than zero and at most what the account owes, as a string: "10.00".',
    )
