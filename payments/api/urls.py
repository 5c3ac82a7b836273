"""Payments API, mounted under /api/v1/ by billing_mgmt/urls.py."""

from django.urls import path

from .exports import ExportAcknowledgeView, ExportConfirmView, ExportListView, ExportRejectView
from .views import (
    AdjustmentDetailView,
    AdjustmentListView,
    PaymentDetailView,
    PaymentListView,
    PaymentReverseView,
    RefundListView,
    WriteOffListView,
)

urlpatterns = [
    path("payments/", PaymentListView.as_view(), name="api-payment-list"),
    path("payments/<int:pk>/", PaymentDetailView.as_view(), name="api-payment"),
    path("payments/<int:pk>/reverse/", PaymentReverseView.as_view(), name="api-payment-reverse"),
    path("adjustments/", AdjustmentListView.as_view(), name="api-adjustment-list"),
    path("adjustments/<int:pk>/", AdjustmentDetailView.as_view(), name="api-adjustment"),
    path("refunds/", RefundListView.as_view(), name="api-refund-list"),
    path("write-offs/", WriteOffListView.as_view(), name="api-write-off-list"),
    # exports to billers (payments/api/exports.py)
    path("exports/", ExportListView.as_view(), name="api-export-list"),
    path(
        "exports/<str:export_id>/acknowledge/", ExportAcknowledgeView.as_view(), name="api-export-acknowledge"
    ),
    path("exports/<str:export_id>/confirm/", ExportConfirmView.as_view(), name="api-export-confirm"),
    path("exports/<str:export_id>/reject/", ExportRejectView.as_view(), name="api-export-reject"),
]
