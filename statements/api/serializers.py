"""Statements API serializers.

Input is validated by the record serializers of ``statements.records`` (inside the ingest service), so
the classes here that describe requests exist for the OpenAPI schema only. Output serializers read the rows
of ``statements.api.selectors`` (annotated with the account's reference, the counts...) and send every amount
as a decimal string in its currency's minor units ("40.50", JPY "1200").
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import PolymorphicProxySerializer, extend_schema_field
from rest_framework import serializers

from billing_mgmt.money import quantize
from statements.models import BillerBalanceSnapshot, FinancialTransaction, Statement, StatementLine
from statements.records import (
    MAX_BULK_RECORDS,
    BalanceRecordSerializer,
    StatementRecordSerializer,
    TransactionRecordSerializer,
    UsageItemSerializer,
    UsageRecordSerializer,
)
from statements.services.ingest import TRANSACTION_KINDS

INGEST_STATUSES = ("accepted", "duplicate", "rejected")
OUTCOMES = ("created", "replaced", "status_updated", "recorded", "posted", "updated", "")


@extend_schema_field({"type": "string", "format": "decimal", "example": "40.50"})
class AmountField(serializers.Field):
    """A money amount as a string with exactly its currency's minor units.

    The database keeps four places for every currency; the API shows what the bill shows.
    """

    def __init__(self, *, currency_from: str = "currency", **kwargs):
        self.currency_path = currency_from.split(".")
        kwargs["read_only"] = True
        super().__init__(**kwargs)

    def get_attribute(self, instance: Any) -> tuple[Decimal | None, str]:
        currency = instance
        for name in self.currency_path:
            currency = getattr(currency, name)
        return super().get_attribute(instance), currency

    def to_representation(self, value: tuple[Decimal | None, str]) -> str | None:
        amount, currency = value
        return None if amount is None else str(quantize(amount, currency))


# Output ---------------------------------------------------------------------------------------------------


class StatementLineSerializer(serializers.ModelSerializer):
    type = serializers.CharField(source="line_type")
    amount = AmountField(currency_from="statement.currency")
    tax = AmountField(currency_from="statement.currency")

    class Meta:
        model = StatementLine
        fields = [
            "position",
            "type",
            "product",
            "service_identifier",
            "description",
            "quantity",
            "unit",
            "unit_price",
            "amount",
            "tax",
            "period_start",
            "period_end",
            "external_id",
        ]
        read_only_fields = fields


class UsageSummarySerializer(serializers.Serializer):
    service_identifier = serializers.CharField()
    usage_type = serializers.CharField()
    quantity = serializers.DecimalField(max_digits=19, decimal_places=6)
    unit = serializers.CharField()
    included_quantity = serializers.DecimalField(max_digits=19, decimal_places=6, allow_null=True)


class StatementSerializer(serializers.ModelSerializer):
    """A statement as stored. Expects a row from statements.api.selectors.api_statements."""

    biller = serializers.CharField(source="biller_code", help_text="The biller's code.")
    account = serializers.CharField(
        source="account_ref",
        allow_null=True,
        help_text="The account's reference at the statement's biller.",
    )
    account_number = serializers.CharField(help_text="The account's number in this product.")
    previous_balance = AmountField()
    payments = AmountField()
    adjustments = AmountField()
    new_charges = AmountField()
    taxes = AmountField()
    total_due = AmountField()
    disputed_amount = AmountField()
    lines_count = serializers.IntegerField()
    usage_count = serializers.IntegerField()

    class Meta:
        model = Statement
        fields = [
            "external_id",
            "number",
            "biller",
            "account",
            "account_number",
            "statement_date",
            "period_start",
            "period_end",
            "due_date",
            "currency",
            "previous_balance",
            "payments",
            "adjustments",
            "new_charges",
            "taxes",
            "total_due",
            "disputed_amount",
            "status",
            "version",
            "channel",
            "received_at",
            "created_at",
            "lines_count",
            "usage_count",
        ]
        read_only_fields = fields


class StatementDetailSerializer(StatementSerializer):
    """A statement with its lines and usage. Expects a row from api_statement_detail (lines prefetched)."""

    lines = StatementLineSerializer(many=True, read_only=True)
    usage = UsageSummarySerializer(source="usage_summaries", many=True, read_only=True)

    class Meta(StatementSerializer.Meta):
        fields = [*StatementSerializer.Meta.fields, "lines", "usage"]
        read_only_fields = fields


class BalanceSnapshotSerializer(serializers.ModelSerializer):
    account = serializers.CharField(source="account_ref", allow_null=True)
    amount = AmountField(help_text="Positive: the customer owes the biller.")

    class Meta:
        model = BillerBalanceSnapshot
        fields = ["id", "account", "as_of", "amount", "currency", "external_id", "received_at"]
        read_only_fields = fields


class BillerTransactionSerializer(serializers.ModelSerializer):
    account = serializers.CharField(source="account_ref", allow_null=True)
    kind = serializers.CharField(help_text="payment, adjustment, refund or write_off.")
    amount = serializers.SerializerMethodField(help_text="As the biller states it (a payment is positive).")
    ledger_amount = AmountField(
        source="amount", help_text="As the ledger carries it: positive raises what the customer owes."
    )
    date = serializers.DateField(source="effective_date")
    statement = serializers.CharField(
        source="statement_external_id", allow_null=True, help_text="External id of its statement."
    )

    class Meta:
        model = FinancialTransaction
        fields = [
            "id",
            "account",
            "external_id",
            "kind",
            "amount",
            "ledger_amount",
            "currency",
            "date",
            "description",
            "statement",
            "posted_at",
        ]
        read_only_fields = fields

    @extend_schema_field(OpenApiTypes.DECIMAL)
    def get_amount(self, row: FinancialTransaction) -> str:
        _kind, sign = TRANSACTION_KINDS.get(row.kind, (row.kind, 1))
        return str(quantize(row.amount * sign, row.currency))


class StatementUsageSerializer(serializers.Serializer):
    external_id = serializers.CharField()
    number = serializers.CharField()
    usage = UsageSummarySerializer(source="usage_summaries", many=True)


class _IngestAnswerSerializer(serializers.Serializer):
    status = serializers.ChoiceField(
        choices=INGEST_STATUSES, help_text="accepted or duplicate (a rejected record gets an error answer)."
    )
    outcome = serializers.ChoiceField(
        choices=OUTCOMES, help_text="What was done (empty for a duplicate: nothing was written)."
    )


class StatementAnswerSerializer(_IngestAnswerSerializer):
    statement = StatementSerializer()


class BalanceAnswerSerializer(_IngestAnswerSerializer):
    balance = BalanceSnapshotSerializer()


class TransactionAnswerSerializer(_IngestAnswerSerializer):
    transaction = BillerTransactionSerializer()


class UsageAnswerSerializer(_IngestAnswerSerializer):
    statement = StatementUsageSerializer()


# Requests (schema only: the records are validated by statements.records in the ingest service) -------------


class StatementPutSerializer(StatementRecordSerializer):
    external_id = serializers.CharField(
        max_length=100, required=False, help_text="Optional: when sent, it must equal the URL's."
    )


def _typed(name: str, record: type[serializers.Serializer]) -> type[serializers.Serializer]:
    """The record serializer with its ``type`` field, as a bulk request carries it."""
    return type(
        f"{name.capitalize()}BulkRecordSerializer",
        (record,),
        {"type": serializers.ChoiceField(choices=[name]), "__module__": __name__},
    )


BULK_RECORD_SERIALIZERS = {
    "statement": _typed("statement", StatementRecordSerializer),
    "balance": _typed("balance", BalanceRecordSerializer),
    "transaction": _typed("transaction", TransactionRecordSerializer),
    "usage": _typed("usage", UsageRecordSerializer),
}


class BulkIngestRequestSerializer(serializers.Serializer):
    records = PolymorphicProxySerializer(
        component_name="BulkRecord",
        serializers=BULK_RECORD_SERIALIZERS,
        resource_type_field_name="type",
        many=True,
        help_text=f"Up to {MAX_BULK_RECORDS} records, each with its `type`.",
    )


class IngestErrorSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()
    fields = serializers.DictField(child=serializers.ListField(child=serializers.CharField()))


class IngestResultSerializer(serializers.Serializer):
    """One record's answer (statements.services.ingest.IngestResult.as_dict)."""

    index = serializers.IntegerField(help_text="The record's position in `records`, from 0.")
    type = serializers.CharField()
    status = serializers.ChoiceField(choices=INGEST_STATUSES)
    external_id = serializers.CharField(required=False)
    outcome = serializers.ChoiceField(choices=OUTCOMES, required=False, help_text="Unless rejected.")
    id = serializers.IntegerField(required=False)
    number = serializers.CharField(required=False, help_text="A statement's number.")
    error = IngestErrorSerializer(required=False, help_text="When rejected.")


class BulkSummarySerializer(serializers.Serializer):
    accepted = serializers.IntegerField()
    duplicate = serializers.IntegerField()
    rejected = serializers.IntegerField()


class BulkIngestAnswerSerializer(serializers.Serializer):
    summary = BulkSummarySerializer()
    results = IngestResultSerializer(many=True)


__all__ = [
    "BalanceAnswerSerializer",
    "BalanceRecordSerializer",
    "BulkIngestAnswerSerializer",
    "BulkIngestRequestSerializer",
    "StatementAnswerSerializer",
    "StatementDetailSerializer",
    "StatementPutSerializer",
    "StatementSerializer",
    "TransactionAnswerSerializer",
    "TransactionRecordSerializer",
    "UsageAnswerSerializer",
    "UsageItemSerializer",
    "UsageRecordSerializer",
]
