"""Invoicing API, mounted under /api/v1/ by billing_mgmt/urls.py.

Invoice numbers may hold a slash (a series prefix such as ``INV/2026/``), so they are matched as paths, the
document downloads before the detail.
"""

from django.urls import path

from .views import (
    InvoiceDetailView,
    InvoiceHtmlView,
    InvoiceListView,
    InvoicePdfView,
    InvoiceXmlView,
    StatementInvoiceView,
)

urlpatterns = [
    path("invoices/", InvoiceListView.as_view(), name="api-invoice-list"),
    path("invoices/<path:number>/pdf", InvoicePdfView.as_view(), name="api-invoice-pdf"),
    path("invoices/<path:number>/html", InvoiceHtmlView.as_view(), name="api-invoice-html"),
    path("invoices/<path:number>/xml", InvoiceXmlView.as_view(), name="api-invoice-xml"),
    path("invoices/<path:number>/", InvoiceDetailView.as_view(), name="api-invoice"),
    path(
        "statements/<str:statement_id>/invoice/", StatementInvoiceView.as_view(), name="api-statement-invoice"
    ),
]
