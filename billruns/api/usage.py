"""Usage records API: sources (mediation systems, billers) push usage in bulk; billers and staff list it.

* A biller's API client pushes and reads its own records: their source is the biller's code, and they reach
  only subscriptions of accounts that reference the biller (billruns.services.usage).
* Staff read every record; Billing admins (and superusers) may push, naming the ``source`` in the body.
"""

from __future__ import annotations

import django_filters
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import generics
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import SAFE_METHODS, BasePermission, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.api import schema as _schema  # noqa: F401  (registers the Api-Key scheme with drf-spectacular)
from accounts.api.permissions import caller_biller, is_api_client
from billing_mgmt.api.filters import UtcIsoDateTimeFilter
from billing_mgmt.api.idempotency import idempotent
from billing_mgmt.api.parsers import StrictJSONParser
from billing_mgmt.api.schema import IDEMPOTENCY_KEY_PARAMETER, ErrorSerializer, error_responses
from billing_mgmt.errors import ApplicationError
from billing_mgmt.roles import BILLING_ADMIN, has_role, is_staff_member
from billruns.models import UsageRecord
from billruns.services.usage import MAX_SOURCE_LENGTH, usage_counts, usage_records_ingest

from .usage_serializers import (
    MAX_USAGE_RECORDS,
    UsageRecordBulkAnswerSerializer,
    UsageRecordBulkSerializer,
    UsageRecordSerializer,
)

TAG = "usage"


class TooManyRecords(ApplicationError):
    status_code = 413
    code = "too_many_records"


class UsageRecordsApiPermission(BasePermission):
    message = "Your role does not allow this: staff read usage records; only Billing admins send them."

    def has_permission(self, request, view) -> bool:
        user = request.user
        if not user or not user.is_authenticated:
            return False
        if is_api_client(user):
            return True
        if request.method in SAFE_METHODS:
            return is_staff_member(user)
        return has_role(user, BILLING_ADMIN)


class UsageRecordFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(
        choices=UsageRecord.Status.choices, method="filter_status", label="Status"
    )
    subscription = django_filters.NumberFilter(field_name="subscription_id", label="Subscription id")
    service_identifier = django_filters.CharFilter(
        field_name="service_identifier", label="Service identifier"
    )
    usage_type = django_filters.CharFilter(field_name="usage_type_code", label="Usage type code")
    rejection_code = django_filters.CharFilter(field_name="rejection_code", label="Rejection code")
    source = django_filters.CharFilter(field_name="source", label="Source (staff only)")
    event_date_from = django_filters.DateFilter(
        field_name="event_date", lookup_expr="gte", label="Event day on or after (YYYY-MM-DD)"
    )
    event_date_to = django_filters.DateFilter(
        field_name="event_date", lookup_expr="lte", label="Event day on or before (YYYY-MM-DD)"
    )
    received_since = UtcIsoDateTimeFilter(
        field_name="received_at", lookup_expr="gte", label="Received at or after (ISO 8601)"
    )

    class Meta:
        model = UsageRecord
        fields: list[str] = []

    def filter_status(self, queryset, name, value):
        """Accepted: still waiting for rating; rated: linked to a segment (the column holds only accepted or
        rejected)."""
        return queryset.with_status(value)

    def __init__(self, *args, request=None, **kwargs):
        super().__init__(*args, request=request, **kwargs)
        if request is not None and caller_biller(request) is not None:
            # A biller sees only its own source: the parameter would say nothing, so it does not exist.
            self.filters.pop("source")


@extend_schema_view(
    get=extend_schema(
        summary="List usage records",
        description=(
            "A biller sees only the records it sent (source = its code); staff see every source's. "
            "Rejected records carry `rejection_code` and `rejection_reason` (docs/usage.md)."
        ),
        responses={200: UsageRecordSerializer(many=True), **error_responses(400, 401, 403)},
    )
)
@extend_schema(tags=[TAG])
class UsageRecordListView(generics.ListAPIView):
    serializer_class = UsageRecordSerializer
    permission_classes = [IsAuthenticated, UsageRecordsApiPermission]
    filterset_class = UsageRecordFilter
    ordering_fields = ["event_time", "event_date", "received_at", "id"]
    ordering = ["-event_time", "-id"]

    def get_queryset(self):
        biller = caller_biller(self.request)
        records = UsageRecord.objects.select_related("rating")
        return records if biller is None else records.filter(source=biller.code)


class UsageRecordBulkView(APIView):
    permission_classes = [IsAuthenticated, UsageRecordsApiPermission]
    parser_classes = [StrictJSONParser]

    @extend_schema(
        summary="Send usage records",
        description=(
            f"Up to {MAX_USAGE_RECORDS} records, answered one by one in order; the answer is `200` whenever "
            "the body has the right shape: look at each result's `outcome`. Safe to resend: a record whose "
            "(source, `external_id`) was received before is a `duplicate` (nothing written), or a `conflict` "
            "when its content differs (nothing changed). An `Idempotency-Key` is accepted but not needed."
        ),
        tags=[TAG],
        request=UsageRecordBulkSerializer,
        parameters=[IDEMPOTENCY_KEY_PARAMETER],
        responses={
            200: UsageRecordBulkAnswerSerializer,
            **error_responses(400, 401, 403, 409),
            413: OpenApiResponse(
                ErrorSerializer,
                description=f"`too_many_records` (more than {MAX_USAGE_RECORDS}) or `request_too_large` "
                "(the body is over API_MAX_BODY_BYTES). Nothing was stored.",
            ),
        },
    )
    @idempotent
    def post(self, request):
        body = request.data
        if not isinstance(body, dict):
            raise ValidationError({"non_field_errors": ['Send {"records": [...]}.']})
        records = body.get("records")
        if not isinstance(records, list) or not records:
            raise ValidationError({"records": ['Send {"records": [...]}: a non-empty list of records.']})
        if len(records) > MAX_USAGE_RECORDS:
            raise TooManyRecords(
                f"At most {MAX_USAGE_RECORDS} records per request; split the batch.",
                fields={"records": [f"{len(records)} records; the limit is {MAX_USAGE_RECORDS}."]},
            )
        biller = caller_biller(request)
        source = self._source(body, biller)
        answers = usage_records_ingest(records=records, source=source, actor=request.user, biller=biller)
        return Response(
            {"counts": usage_counts(answers), "results": [answer.as_dict() for answer in answers]}
        )

    @staticmethod
    def _source(body: dict, biller) -> str:
        sent = body.get("source")
        if biller is not None:
            if sent not in (None, biller.code):
                raise ValidationError(
                    {"source": ["Leave this out: your records' source is your biller code."]}
                )
            return biller.code
        if not isinstance(sent, str) or not sent.strip():
            raise ValidationError({"source": ["Staff name the source of the records (e.g. 'mediation')."]})
        if len(sent.strip()) > MAX_SOURCE_LENGTH:
            raise ValidationError({"source": [f"At most {MAX_SOURCE_LENGTH} characters."]})
        return sent.strip()
