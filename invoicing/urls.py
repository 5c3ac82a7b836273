"""Invoice pages for CSRs (downloads), mounted at /invoices/ by billing_mgmt/urls.py."""

from django.urls import re_path

from . import views

urlpatterns = [
    # /invoices/INV-00000042.pdf, .html, .xml: the invoice's stored documents.
    re_path(
        r"^(?P<number>[^/]+?)\.(?P<extension>pdf|html|xml)$", views.invoice_download, name="invoice-download"
    ),
]
