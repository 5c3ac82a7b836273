"""Billing engine API, mounted under /api/v1/ by billing_mgmt/urls.py: the catalog, subscriptions, usage
records, bills (bill now, preview), billing runs with their definitions, and prepaid wallets."""

from django.urls import path

from .bills import BillCreateView, BillPreviewView, BillReverseView
from .catalog import PricePlanDetailView, PricePlanListView
from .runs import BillingRunExceptionListView, BillingRunViewSet, RunDefinitionListView
from .subscriptions import SubscriptionViewSet
from .usage import UsageRecordBulkView, UsageRecordListView
from .wallets import WalletTopUpView, WalletView

RUN = "billing-runs/<str:number>/"

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
    path("bills/<int:statement_id>/reverse/", BillReverseView.as_view(), name="api-bill-reverse"),
    # billing runs and run definitions (billruns/api/runs.py)
    path(
        "billing-runs/",
        BillingRunViewSet.as_view({"get": "list", "post": "create"}),
        name="api-billing-run-list",
    ),
    path(
        RUN,
        BillingRunViewSet.as_view({"get": "retrieve", "patch": "partial_update", "delete": "destroy"}),
        name="api-billing-run-detail",
    ),
    path(f"{RUN}execute/", BillingRunViewSet.as_view({"post": "execute"}), name="api-billing-run-execute"),
    path(f"{RUN}resume/", BillingRunViewSet.as_view({"post": "resume"}), name="api-billing-run-resume"),
    path(
        f"{RUN}unschedule/",
        BillingRunViewSet.as_view({"post": "unschedule"}),
        name="api-billing-run-unschedule",
    ),
    path(f"{RUN}exceptions/", BillingRunExceptionListView.as_view(), name="api-billing-run-exceptions"),
    path("run-definitions/", RunDefinitionListView.as_view(), name="api-run-definition-list"),
    # prepaid wallets (billruns/api/wallets.py)
    path("wallets/<str:number>/", WalletView.as_view(), name="api-wallet-detail"),
    path("wallets/<str:number>/top-ups/", WalletTopUpView.as_view(), name="api-wallet-top-up"),
]
