"""Statements API, mounted under /api/v1/ by billing_mgmt/urls.py."""

from django.urls import path

from .views import BalanceView, BulkIngestView, StatementListView, StatementView, TransactionView, UsageView

urlpatterns = [
    path("statements/", StatementListView.as_view(), name="api-statement-list"),
    path("statements/<str:external_id>/", StatementView.as_view(), name="api-statement"),
    path("balances/", BalanceView.as_view(), name="api-balance"),
    path("transactions/", TransactionView.as_view(), name="api-transaction"),
    path("usage/", UsageView.as_view(), name="api-usage"),
    path("ingest/bulk/", BulkIngestView.as_view(), name="api-ingest-bulk"),
]
