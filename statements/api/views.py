"""Statements API views: billers push statements, balances, transactions and usage; billers and staff read
statements.

Every write goes through ``statements.services.ingest_records``: it validates the record, finds the account
only by the calling biller's own reference, stores the record in its own transaction and answers per record.
The views only check the request's shape, pick the status code and shape the answer.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from django.shortcuts import get_object_or_404
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import generics, status
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.api import schema as _schema  # noqa: F401  (registers the Api-Key scheme with drf-spectacular)
from accounts.api.permissions import caller_biller
from billing_mgmt.api.errors import error_body
from billing_mgmt.api.idempotency import idempotent
from billing_mgmt.api.parsers import StrictJSONParser
from billing_mgmt.api.schema import IDEMPOTENCY_KEY_PARAMETER, ErrorSerializer, error_responses
from billing_mgmt.errors import ApplicationError
from statements.models import Channel, Statement
from statements.records import MAX_BULK_RECORDS, BalanceRecordSerializer, TransactionRecordSerializer
from statements.records import UsageRecordSerializer as UsageRecordRequestSerializer
from statements.services import IngestResult, ingest_records
from statements.services.ingest import REJECTED

from .filters import StatementFilter
from .permissions import StatementsApiPermission
from .selectors import (
    api_balance_snapshot,
    api_biller_transaction,
    api_statement_detail,
    api_statement_usage,
    api_statements,
)
from .serializers import (
    BalanceAnswerSerializer,
    BalanceSnapshotSerializer,
    BillerTransactionSerializer,
    BulkIngestAnswerSerializer,
    BulkIngestRequestSerializer,
    StatementAnswerSerializer,
    StatementDetailSerializer,
    StatementPutSerializer,
    StatementSerializer,
    StatementUsageSerializer,
    TransactionAnswerSerializer,
    UsageAnswerSerializer,
)

STATEMENTS_TAG = "statements"
INGEST_TAG = "ingest"


class TooManyRecords(ApplicationError):
    status_code = 413
    code = "too_many_records"


def _too_large_response(description: str) -> OpenApiResponse:
    return OpenApiResponse(ErrorSerializer, description=description)


_REQUEST_TOO_LARGE = _too_large_response(
    "`request_too_large`: the body is over the server's limit (API_MAX_BODY_BYTES). Nothing was stored."
)
_WRITE_ERRORS = {
    **error_responses(400, 401, 403, 409),
    413: _REQUEST_TOO_LARGE,
}
_RECORD_ERROR_DESCRIPTION = (
    "The record was rejected: `error.code` says why (`invalid`, `unknown_account`, `wrong_currency`, "
    "`unknown_statement`, `statement_locked`, `snapshot_conflict`, ...) and `error.fields` names each field. "
    "Nothing of it was stored."
)


def _rejected_response(result: IngestResult) -> Response:
    return Response(error_body(result.code, result.message, result.fields), status=result.http_status)


class _IngestView(APIView):
    """A write of one or more records by the calling biller."""

    permission_classes = [IsAuthenticated, StatementsApiPermission]
    parser_classes = [StrictJSONParser]  # records are JSON; a form body is a 415

    def ingest(self, records: list[Any]) -> list[IngestResult]:
        return ingest_records(
            biller=caller_biller(self.request), records=records, channel=Channel.API, actor=self.request.user
        )

    def one_record(self, record_type: str) -> dict[str, Any]:
        """The body as one record of ``record_type`` (``type`` may be left out)."""
        body = self.request.data
        if not isinstance(body, dict):
            raise ValidationError({"non_field_errors": [f"The body is one {record_type} record: an object."]})
        if body.get("type", record_type) != record_type:
            raise ValidationError({"type": [f"This endpoint takes {record_type} records only."]})
        return {**body, "type": record_type}

    def answer(self, result: IngestResult, name: str, data: dict[str, Any]) -> Response:
        """201 for a record stored now, 200 for a duplicate (nothing written)."""
        code = status.HTTP_201_CREATED if result.status == "accepted" else status.HTTP_200_OK
        return Response({"status": result.status, "outcome": result.outcome, name: data}, status=code)


# Statements -----------------------------------------------------------------------------------------------


@extend_schema_view(
    get=extend_schema(
        summary="List statements",
        description=(
            "A biller sees only its own statements; staff (CSR, Supervisor, Billing admin) see every "
            "biller's. Lines and usage are in the detail (`GET /statements/{external_id}/`)."
        ),
        responses={200: StatementSerializer(many=True), **error_responses(400, 401, 403)},
    ),
)
@extend_schema(tags=[STATEMENTS_TAG])
class StatementListView(generics.ListAPIView):
    serializer_class = StatementSerializer
    permission_classes = [IsAuthenticated, StatementsApiPermission]
    filterset_class = StatementFilter
    ordering_fields = ["statement_date", "due_date", "received_at", "number", "external_id"]
    ordering = ["-statement_date", "-id"]

    def get_queryset(self):
        return api_statements(biller=caller_biller(self.request))


_EXTERNAL_ID_PARAMETER = OpenApiParameter(
    "external_id", OpenApiTypes.STR, OpenApiParameter.PATH, description="The biller's id of the statement."
)
_BILLER_PARAMETER = OpenApiParameter(
    "biller",
    OpenApiTypes.STR,
    OpenApiParameter.QUERY,
    required=False,
    description="Staff only, and required for staff: the code of the biller whose statement this is.",
)


@extend_schema_view(
    get=extend_schema(
        summary="Get a statement with its lines and usage",
        description="A biller reads its own statements (another biller's is a 404); staff add `?biller=`.",
        parameters=[_BILLER_PARAMETER],
        responses={200: StatementDetailSerializer, **error_responses(400, 401, 403, 404)},
    ),
    put=extend_schema(
        summary="Create or replace a statement",
        description=(
            "Billers only. The body is a statement record (docs/biller-records.md) without `type`; its "
            "`external_id` comes from the URL. `201` created; `200` replaced, status updated, or the same "
            "content again (`status: duplicate`, nothing written). A paid, partially paid or disputed "
            "statement cannot be replaced: `409 statement_locked`."
        ),
        tags=[STATEMENTS_TAG, INGEST_TAG],
        request=StatementPutSerializer,
        parameters=[IDEMPOTENCY_KEY_PARAMETER],
        responses={
            201: StatementAnswerSerializer,
            200: StatementAnswerSerializer,
            **_WRITE_ERRORS,
            400: OpenApiResponse(ErrorSerializer, description=_RECORD_ERROR_DESCRIPTION),
        },
    ),
)
@extend_schema(tags=[STATEMENTS_TAG], parameters=[_EXTERNAL_ID_PARAMETER])
class StatementView(_IngestView, generics.GenericAPIView):
    serializer_class = StatementDetailSerializer
    filter_backends: list = []
    pagination_class = None

    def get_object(self) -> Statement:
        biller = caller_biller(self.request)
        statements = api_statement_detail(biller=biller)
        if biller is None:
            code = self.request.query_params.get("biller", "").strip()
            if not code:
                raise ValidationError({"biller": ["Staff name the biller: ?biller=<code>."]})
            statements = statements.filter(biller__code=code)
        return get_object_or_404(statements, external_id=self.kwargs["external_id"])

    def get(self, request, external_id: str):
        return Response(StatementDetailSerializer(self.get_object()).data)

    @idempotent
    def put(self, request, external_id: str):
        record = self.one_record("statement")
        if record.get("external_id", external_id) != external_id:
            message = f"The URL says {external_id}; leave this out or match it."
            raise ValidationError({"external_id": [message]})
        record["external_id"] = external_id
        (result,) = self.ingest([record])
        if result.status == REJECTED:
            return _rejected_response(result)
        statement = api_statements(biller=caller_biller(request)).get(pk=result.id)
        code = status.HTTP_201_CREATED if result.outcome == "created" else status.HTTP_200_OK
        headers = {"Location": reverse("api-statement", kwargs={"external_id": external_id})}
        body = {
            "status": result.status,
            "outcome": result.outcome,
            "statement": StatementSerializer(statement).data,
        }
        return Response(body, status=code, headers=headers if code == 201 else None)


# Balances, transactions, usage ----------------------------------------------------------------------------


def _single_record_schema(summary: str, description: str, request, answer) -> dict[str, Any]:
    return {
        "summary": summary,
        "description": description,
        "request": request,
        "parameters": [IDEMPOTENCY_KEY_PARAMETER],
        "responses": {
            201: answer,
            200: OpenApiResponse(answer, description="A duplicate: the same record again, nothing written."),
            **_WRITE_ERRORS,
            400: OpenApiResponse(ErrorSerializer, description=_RECORD_ERROR_DESCRIPTION),
        },
        "tags": [INGEST_TAG],
    }


class BalanceView(_IngestView):
    @extend_schema(
        **_single_record_schema(
            "Record the biller's balance of an account",
            "A snapshot, never overwritten: the same moment (or `external_id`) with the same amount is a "
            "duplicate (`200`); with another amount `409 snapshot_conflict`.",
            BalanceRecordSerializer,
            BalanceAnswerSerializer,
        )
    )
    @idempotent
    def post(self, request):
        (result,) = self.ingest([self.one_record("balance")])
        if result.status == REJECTED:
            return _rejected_response(result)
        snap = api_balance_snapshot(biller=caller_biller(request), snapshot_id=result.id)
        return self.answer(result, "balance", BalanceSnapshotSerializer(snap).data)


class TransactionView(_IngestView):
    @extend_schema(
        **_single_record_schema(
            "Post a payment, adjustment, refund or write-off made at the biller",
            "One ledger row, idempotent by (biller, `external_id`): the same record again is a duplicate "
            "(`200`); the same `external_id` with other content is a `409`.",
            TransactionRecordSerializer,
            TransactionAnswerSerializer,
        )
    )
    @idempotent
    def post(self, request):
        (result,) = self.ingest([self.one_record("transaction")])
        if result.status == REJECTED:
            return _rejected_response(result)
        row = api_biller_transaction(biller=caller_biller(request), transaction_id=result.id)
        return self.answer(result, "transaction", BillerTransactionSerializer(row).data)


class UsageView(_IngestView):
    @extend_schema(
        **_single_record_schema(
            "Set usage summaries of a statement",
            "Adds or updates the summaries by service and usage type of one of the biller's statements; the "
            "same summaries again are a duplicate (`200`); an unknown statement is `400 unknown_statement`.",
            UsageRecordRequestSerializer,
            UsageAnswerSerializer,
        )
    )
    @idempotent
    def post(self, request):
        (result,) = self.ingest([self.one_record("usage")])
        if result.status == REJECTED:
            return _rejected_response(result)
        statement = api_statement_usage(biller=caller_biller(request), statement_id=result.id)
        return self.answer(result, "statement", StatementUsageSerializer(statement).data)


# Bulk -----------------------------------------------------------------------------------------------------


class BulkIngestView(_IngestView):
    @extend_schema(
        summary="Send many records at once",
        description=(
            f"Up to {MAX_BULK_RECORDS} records of any type, each stored in its own transaction and answered "
            "on its own, in order: a rejected record never loses the others. The answer is `200` whenever "
            "the body has the right shape; look at each result's `status`."
        ),
        tags=[INGEST_TAG],
        request=BulkIngestRequestSerializer,
        parameters=[IDEMPOTENCY_KEY_PARAMETER],
        responses={
            200: BulkIngestAnswerSerializer,
            **error_responses(400, 401, 403, 409),
            413: _too_large_response(
                f"`too_many_records` (more than {MAX_BULK_RECORDS}) or `request_too_large` (the body is over "
                "API_MAX_BODY_BYTES). Nothing was stored."
            ),
        },
    )
    @idempotent
    def post(self, request):
        body = request.data
        records = body.get("records") if isinstance(body, dict) else None
        if not isinstance(records, list) or not records:
            raise ValidationError({"records": ['Send {"records": [...]}: a non-empty list of records.']})
        if len(records) > MAX_BULK_RECORDS:
            raise TooManyRecords(
                f"At most {MAX_BULK_RECORDS} records per request; split the batch.",
                fields={"records": [f"{len(records)} records; the limit is {MAX_BULK_RECORDS}."]},
            )
        # No transaction around the batch: each record commits on its own, so a long batch never holds the
        # statement number series (locked while a statement is created) for the others' writes.
        results = self.ingest(records)
        counts = Counter(result.status for result in results)
        summary = {name: counts.get(name, 0) for name in ("accepted", "duplicate", "rejected")}
        return Response({"summary": summary, "results": [result.as_dict() for result in results]})
