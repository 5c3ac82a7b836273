"""Billing engine API, mounted under /api/v1/ by billing_mgmt/urls.py: the catalog, subscriptions, usage
records and bills (bill now, preview)."""

from django.urls import path

from .bills import BillCreateView, BillPreviewView
from .catalog import PricePlanDetailView, PricePlanListView
from .subscriptions import SubscriptionViewSet
from .usage import UsageRecordBulkView, UsageRecordListView

urlpatterns: list = [
    # catalog and subscriptions (billruns/api/catalog.py, subscriptions.py)
    path("catalog/price-plans/", PricePlanListView.as_view(), name="api-price-plan-list"),
    path("catalog/price-plans/<slug:code>/", PricePlanDetailView.as_view(), name="api-price-plan-detail"),
    path(
        "subscriptions/",
        SubscriptionViewSet.as_view({"get": "list", "post": "create"}),
        name="api-subscription-list",
    ),
    path(
        "subscriptions/<int:pk>/",
        SubscriptionViewSet.as_view({"get": "retrieve", "patch": "partial_update"}),
        name="api-subscription-detail",
    ),
    path(
        "subscriptions/<int:pk>/cancel/",
        SubscriptionViewSet.as_view({"post": "cancel"}),
        name="api-subscription-cancel",
    ),
    # usage records (billruns/api/usage.py)
    path("usage-records/", UsageRecordListView.as_view(), name="api-usage-record-list"),
    path("usage-records/bulk/", UsageRecordBulkView.as_view(), name="api-usage-record-bulk"),
    # bills (billruns/api/bills.py)
    path("bills/", BillCreateView.as_view(), name="api-bill-create"),
    path("bills/preview/", BillPreviewView.as_view(), name="api-bill-preview"),
]
