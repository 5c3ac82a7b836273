"""Usage records API serializers.

Records in a bulk request are validated one by one by the ingest service (billruns.services.usage), so that a
malformed record is answered ``invalid`` on its own instead of failing the batch: the request serializers here
describe the records for the OpenAPI schema. The output serializer reads stored rows as they are (no joins).
"""

from __future__ import annotations

from rest_framework import serializers

from billruns.models import UsageRecord
from billruns.services.usage import MAX_SOURCE_LENGTH, OUTCOMES
from statements.models import QUANTITY_DIGITS, QUANTITY_PLACES

MAX_USAGE_RECORDS = 10_000  # per bulk request


class UsageRecordInSerializer(serializers.Serializer):
    """One usage record as a source sends it (docs/usage.md)."""

    external_id = serializers.CharField(
        max_length=100, help_text="The source's id of the record: resending it is safe (a duplicate)."
    )
    usage_type = serializers.SlugField(max_length=40, help_text="A usage type code, e.g. voice, data.")
    quantity = serializers.DecimalField(
        max_digits=QUANTITY_DIGITS, decimal_places=QUANTITY_PLACES, min_value=0, help_text="Not negative."
    )
    unit = serializers.CharField(max_length=20, help_text="Must be the usage type's unit, e.g. min, MB.")
    event_time = serializers.DateTimeField(
        help_text="ISO 8601 with offset, e.g. 2026-06-05T14:03:00+02:00. Its day in the business time zone "
        "decides the subscription and the billing period."
    )
    subscription_id = serializers.IntegerField(
        required=False, min_value=1, help_text="The subscription, when the source knows its id."
    )
    service_identifier = serializers.CharField(
        max_length=100,
        required=False,
        help_text="Phone number, meter...: matched to the subscription that covers the event's day. "
        "One of subscription_id and service_identifier is required.",
    )


class UsageRecordBulkSerializer(serializers.Serializer):
    records = UsageRecordInSerializer(many=True, help_text=f"1 to {MAX_USAGE_RECORDS} records.")
    source = serializers.CharField(
        max_length=MAX_SOURCE_LENGTH,
        required=False,
        help_text="Staff only, and required for staff: who the records come from (a mediation system, a "
        "biller code). A biller's records always have its own code as source.",
    )


class UsageRecordAnswerSerializer(serializers.Serializer):
    index = serializers.IntegerField(help_text="The record's position in the request, from 0.")
    external_id = serializers.CharField(allow_blank=True)
    # A plain string in the schema: an "outcome" enum already exists (statements' ingest answers).
    outcome = serializers.CharField(
        help_text=f"One of {', '.join(OUTCOMES)}. "
        "created (accepted), rejected (stored, not matched: see code), duplicate (nothing "
        "written), conflict (the external id was used with other content; nothing changed), invalid (not "
        "stored: see fields).",
    )
    id = serializers.IntegerField(allow_null=True, help_text="The stored record (none when invalid).")
    status = serializers.ChoiceField(
        choices=UsageRecord.Status.choices, allow_null=True, help_text="The stored record's status."
    )
    code = serializers.CharField(allow_blank=True, help_text="Rejection or error code; empty when accepted.")
    message = serializers.CharField(allow_blank=True)
    fields = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()), help_text="Field errors by field name."
    )


class UsageRecordCountsSerializer(serializers.Serializer):
    created = serializers.IntegerField()
    duplicate = serializers.IntegerField()
    rejected = serializers.IntegerField()
    invalid = serializers.IntegerField()
    conflict = serializers.IntegerField()


class UsageRecordBulkAnswerSerializer(serializers.Serializer):
    counts = UsageRecordCountsSerializer()
    results = UsageRecordAnswerSerializer(many=True)


class UsageRecordSerializer(serializers.ModelSerializer):
    """A stored usage record."""

    subscription = serializers.IntegerField(source="subscription_id", allow_null=True)
    subscription_ref = serializers.CharField(help_text="The subscription id as sent, if any.")
    usage_type = serializers.CharField(source="usage_type_code", help_text="As sent.")
    status = serializers.ChoiceField(
        source="rating_status",
        choices=UsageRecord.Status.choices,
        help_text="accepted (waiting for rating), rated or rejected.",
    )
    segment = serializers.IntegerField(
        source="rated_segment_id", allow_null=True, help_text="The bill segment that rated it."
    )

    class Meta:
        model = UsageRecord
        fields = [
            "id",
            "source",
            "external_id",
            "subscription",
            "subscription_ref",
            "service_identifier",
            "usage_type",
            "quantity",
            "unit",
            "event_time",
            "event_date",
            "status",
            "rejection_code",
            "rejection_reason",
            "segment",
            "received_at",
        ]
        read_only_fields = fields
