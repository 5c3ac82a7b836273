"""Bills API: bill one account now, or preview the bill it would get (staff only).

``POST /api/v1/bills/`` creates the bill (Supervisor or Billing admin: ``billruns.bill_account``);
``POST /api/v1/bills/preview/`` answers the same bill, storing nothing (``billruns.preview_bill``: CSRs too).
Biller API clients may not bill: billing is this product's own engine.
"""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import BasePermission, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.api.permissions import is_api_client
from accounts.models import Account
from billing_mgmt.api.idempotency import idempotent
from billing_mgmt.api.schema import IDEMPOTENCY_KEY_PARAMETER, error_responses
from billruns.services import bill_create, bill_preview, bill_reverse
from statements.models import Statement

BILLS_TAG = "bills"


class BillRequestSerializer(serializers.Serializer):
    account = serializers.CharField(
        max_length=30, help_text="The account number (a non-paying child bills its payer)."
    )
    bill_date = serializers.DateField(required=False, help_text="The bill's date; default today.")
    bill_as_of = serializers.DateField(
        required=False, help_text="Rate periods that have started by this date; default the bill date."
    )

    def validate(self, attrs):
        if attrs.get("bill_date") and attrs.get("bill_as_of") and attrs["bill_as_of"] > attrs["bill_date"]:
            raise serializers.ValidationError({"bill_as_of": ["Must not be after the bill date."]})
        return attrs


class CalculationLineOutSerializer(serializers.Serializer):
    kind = serializers.CharField()
    description = serializers.CharField()
    quantity = serializers.DecimalField(max_digits=19, decimal_places=6, allow_null=True)
    unit = serializers.CharField()
    rate = serializers.DecimalField(max_digits=24, decimal_places=8, allow_null=True)
    proration_factor = serializers.DecimalField(max_digits=12, decimal_places=10, allow_null=True)
    base = serializers.DecimalField(max_digits=19, decimal_places=4, allow_null=True)
    amount = serializers.DecimalField(max_digits=19, decimal_places=4)
    included = serializers.BooleanField()
    period_start = serializers.DateField()
    period_end = serializers.DateField()


class SegmentOutSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    subscription_id = serializers.IntegerField()
    service_identifier = serializers.CharField()
    price_plan = serializers.CharField()
    period_start = serializers.DateField()
    period_end = serializers.DateField()
    charges = serializers.DecimalField(max_digits=19, decimal_places=4)
    discounts = serializers.DecimalField(max_digits=19, decimal_places=4)
    taxes = serializers.DecimalField(max_digits=19, decimal_places=4)
    taxes_included = serializers.DecimalField(max_digits=19, decimal_places=4)
    total = serializers.DecimalField(max_digits=19, decimal_places=4)
    lines = CalculationLineOutSerializer(many=True)


class SweptOutSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.CharField()
    effective_date = serializers.DateField()
    amount = serializers.DecimalField(max_digits=19, decimal_places=4)
    description = serializers.CharField()


class SegmentErrorOutSerializer(serializers.Serializer):
    subscription_id = serializers.IntegerField()
    service_identifier = serializers.CharField()
    period_start = serializers.DateField()
    period_end = serializers.DateField()
    code = serializers.CharField()
    message = serializers.CharField()


class BillOutSerializer(serializers.Serializer):
    preview = serializers.BooleanField()
    statement_id = serializers.IntegerField(allow_null=True)
    number = serializers.CharField(allow_null=True)
    account = serializers.CharField()
    currency = serializers.CharField()
    statement_date = serializers.DateField()
    due_date = serializers.DateField()
    period_start = serializers.DateField()
    period_end = serializers.DateField()
    previous_balance = serializers.DecimalField(max_digits=19, decimal_places=4)
    payments = serializers.DecimalField(max_digits=19, decimal_places=4)
    adjustments = serializers.DecimalField(max_digits=19, decimal_places=4)
    new_charges = serializers.DecimalField(max_digits=19, decimal_places=4)
    taxes = serializers.DecimalField(max_digits=19, decimal_places=4)
    total_due = serializers.DecimalField(max_digits=19, decimal_places=4)
    segments = SegmentOutSerializer(many=True)
    swept_transactions = SweptOutSerializer(many=True)
    messages = serializers.ListField(child=serializers.CharField())
    errors = SegmentErrorOutSerializer(many=True)


class _StaffWithPermission(BasePermission):
    perm = ""
    message = "Your role does not allow this."

    def has_permission(self, request, view) -> bool:
        user = request.user
        return bool(user and user.is_authenticated and not is_api_client(user) and user.has_perm(self.perm))


class CanBill(_StaffWithPermission):
    perm = "billruns.bill_account"


class CanPreview(_StaffWithPermission):
    perm = "billruns.preview_bill"


def _run(request, service):
    data = BillRequestSerializer(data=request.data)
    data.is_valid(raise_exception=True)
    account = get_object_or_404(
        Account.objects.select_related("billing_profile"), number=data.validated_data["account"]
    )
    result = service(
        account=account,
        bill_date=data.validated_data.get("bill_date"),
        bill_as_of=data.validated_data.get("bill_as_of"),
        actor=request.user,
    )
    return BillOutSerializer(result.as_dict()).data


@extend_schema(tags=[BILLS_TAG])
class BillCreateView(APIView):
    permission_classes = [IsAuthenticated, CanBill]

    @extend_schema(
        operation_id="bill_create",
        summary="Bill an account now",
        description=(
            "Rates every subscription of the account's bill unit up to `bill_as_of`, then creates and "
            "posts one bill. Segments that cannot be rated are left out and listed in `errors`. "
            "`nothing_to_bill` (400) when there is nothing new."
        ),
        request=BillRequestSerializer,
        responses={201: BillOutSerializer, **error_responses(400, 401, 403, 404, 409)},
        parameters=[IDEMPOTENCY_KEY_PARAMETER],
    )
    @idempotent
    def post(self, request):
        return Response(_run(request, bill_create), status=status.HTTP_201_CREATED)


@extend_schema(tags=[BILLS_TAG])
class BillPreviewView(APIView):
    permission_classes = [IsAuthenticated, CanPreview]

    @extend_schema(
        operation_id="bill_preview",
        summary="Preview the bill an account would get now",
        description="The same computation as bill now, rolled back: nothing is stored.",
        request=BillRequestSerializer,
        responses={200: BillOutSerializer, **error_responses(400, 401, 403, 404)},
    )
    def post(self, request):
        return Response(_run(request, bill_preview))


class BillReverseRequestSerializer(serializers.Serializer):
    reason = serializers.CharField(
        max_length=250, help_text="Why the bill is reversed (printed on the ledger row)."
    )


class BillReverseOutSerializer(serializers.Serializer):
    statement_id = serializers.IntegerField(source="pk")
    number = serializers.CharField()
    corrects = serializers.CharField(source="corrects.number")
    statement_date = serializers.DateField()
    currency = serializers.CharField()
    previous_balance = serializers.DecimalField(max_digits=19, decimal_places=4)
    payments = serializers.DecimalField(max_digits=19, decimal_places=4)
    adjustments = serializers.DecimalField(max_digits=19, decimal_places=4)
    new_charges = serializers.DecimalField(max_digits=19, decimal_places=4)
    taxes = serializers.DecimalField(max_digits=19, decimal_places=4)
    total_due = serializers.DecimalField(max_digits=19, decimal_places=4)


@extend_schema(tags=[BILLS_TAG])
class BillReverseView(APIView):
    permission_classes = [IsAuthenticated, CanBill]

    @extend_schema(
        operation_id="bill_reverse",
        summary="Reverse a bill with a corrective bill",
        description=(
            "Credits everything the bill charged with a reversing bill that refers to it; its invoice is a "
            "credit note referring to the original invoice. `not_engine_bill` (400) for an external biller's "
            "statement, `is_correction` (400) for a corrective bill, `already_reversed` (409)."
        ),
        request=BillReverseRequestSerializer,
        responses={201: BillReverseOutSerializer, **error_responses(400, 401, 403, 404, 409)},
        parameters=[IDEMPOTENCY_KEY_PARAMETER],
    )
    @idempotent
    def post(self, request, statement_id: int):
        data = BillReverseRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        statement = get_object_or_404(Statement, pk=statement_id)
        reversal = bill_reverse(statement=statement, reason=data.validated_data["reason"], actor=request.user)
        return Response(BillReverseOutSerializer(reversal).data, status=status.HTTP_201_CREATED)
