"""Exports API: a biller reads the payments, reversals and adjustments queued for it, acknowledges them (if it
polls), and confirms or rejects each one (docs/payments.md, "Export to billers").

Biller API clients only, each seeing only its own biller's exports (another biller's export is a 404). Staff
see exports on the account page and in admin.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers
from rest_framework.permissions import BasePermission, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.api.permissions import caller_biller, is_api_client
from billing_mgmt.api.schema import error_responses
from billing_mgmt.errors import ApplicationError

from ..models import ExportItem
from ..services import export_acknowledge, export_answer

EXPORTS_TAG = "exports"


class BillerClientsOnly(BasePermission):
    message = "Exports are read and answered by the biller they are for (an API key)."

    def has_permission(self, request, view) -> bool:
        return bool(request.user and request.user.is_authenticated and is_api_client(request.user))


class ExportSerializer(serializers.ModelSerializer):
    type = serializers.CharField(source="kind")

    class Meta:
        model = ExportItem
        fields = [
            "export_id",
            "type",
            "status",
            "payload",
            "attempts",
            "created_at",
            "delivered_at",
            "answered_at",
            "rejection_reason",
        ]


class RejectSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=300, help_text="Why the biller refuses it (shown to the CSR).")


@extend_schema(tags=[EXPORTS_TAG])
class ExportListView(generics.ListAPIView):
    """The calling biller's exports, oldest first; ``?status=pending`` for what it has not taken yet."""

    serializer_class = ExportSerializer
    permission_classes = [IsAuthenticated, BillerClientsOnly]

    @extend_schema(
        summary="List the exports for the calling biller",
        responses={200: ExportSerializer(many=True), **error_responses(401, 403)},
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        rows = ExportItem.objects.filter(biller=caller_biller(self.request)).order_by("created_at", "id")
        wanted = self.request.query_params.get("status", "").strip()
        if wanted:
            if wanted not in ExportItem.Status.values:
                raise ApplicationError(
                    "Unknown status.", fields={"status": [f"One of {', '.join(ExportItem.Status.values)}."]}
                )
            rows = rows.filter(status=wanted)
        return rows


class _Answer(APIView):
    permission_classes = [IsAuthenticated, BillerClientsOnly]

    def answer(self, request, export_id):  # pragma: no cover - overridden
        raise NotImplementedError

    def post(self, request, export_id: str):
        item = self.answer(request, export_id)
        return Response(ExportSerializer(item).data)


@extend_schema(
    tags=[EXPORTS_TAG],
    request=None,
    responses={200: ExportSerializer, **error_responses(401, 403, 404)},
    summary="Acknowledge an export (a polling biller took it)",
)
class ExportAcknowledgeView(_Answer):
    def answer(self, request, export_id):
        return export_acknowledge(biller=caller_biller(request), export_id=export_id)


@extend_schema(
    tags=[EXPORTS_TAG],
    request=None,
    responses={200: ExportSerializer, **error_responses(401, 403, 404, 409)},
    summary="Confirm an export (the biller applied it)",
)
class ExportConfirmView(_Answer):
    def answer(self, request, export_id):
        return export_answer(
            biller=caller_biller(request), export_id=export_id, accepted=True, actor=request.user
        )


@extend_schema(
    tags=[EXPORTS_TAG],
    request=RejectSerializer,
    responses={200: ExportSerializer, **error_responses(400, 401, 403, 404, 409)},
    summary="Reject an export (a payment is reversed here, an adjustment undone)",
)
class ExportRejectView(_Answer):
    def answer(self, request, export_id):
        data = RejectSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        return export_answer(
            biller=caller_biller(request),
            export_id=export_id,
            accepted=False,
            reason=data.validated_data["reason"],
            actor=request.user,
        )
