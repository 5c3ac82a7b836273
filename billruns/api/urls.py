"""Billing engine API, mounted under /api/v1/ by billing_mgmt/urls.py: the catalog, subscriptions, usage
records and bills (bill now, preview)."""

from django.urls import path

from .bills import BillCreateView, BillPreviewView

urlpatterns: list = [
    # catalog and subscriptions (billruns/api/catalog.py, subscriptions.py)
    # usage records (billruns/api/usage.py)
    # bills (billruns/api/bills.py)
    path("bills/", BillCreateView.as_view(), name="api-bill-create"),
    path("bills/preview/", BillPreviewView.as_view(), name="api-bill-preview"),
]
