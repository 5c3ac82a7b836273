"""Writes of the invoicing app (one module per concern):

* ``issuing``: invoice series, issuing invoices with gapless numbers, bill routings;
* ``rendering``: HTML, PDF and XML documents, stored once (``invoices_render`` is what a billing run's
  Formatting step and the daily catch-up call);
* ``delivery``: e-mail with the PDF (retried), print batches, the portal;
* ``catchup``: the daily job that invoices every bill left without documents.
"""

from .issuing import default_series, invoice_series_create, invoices_issue, routings_create
from .rendering import RenderResult, invoice_preview, invoices_render, render_document

__all__ = [
    "RenderResult",
    "default_series",
    "invoice_preview",
    "invoice_series_create",
    "invoices_issue",
    "invoices_render",
    "render_document",
    "routings_create",
]
