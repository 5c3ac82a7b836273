"""CSR pages of invoices: the account page's Invoices section, the statement page's Invoice panel
(registered in InvoicingConfig.ready()) and the downloads of an invoice's frozen documents at
/invoices/<number>.pdf|.html|.xml (invoicing/urls.py).

The downloads serve the files stored when the invoice was rendered, never a new rendering: what a CSR
downloads is what the customer received.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.core.exceptions import PermissionDenied
from django.http import FileResponse, Http404, HttpRequest
from django.template.loader import render_to_string
from django.views.decorators.http import require_GET

from accounts.models import Account
from billing_mgmt.errors import NotFound
from billing_mgmt.sections import RenderedPanel, staff_required
from statements.models import Channel
from statements.views.statements import account_locale

from . import selectors
from .models import Invoice, InvoiceDelivery

VIEW_PERMISSION = "invoicing.view_invoice"


@dataclass(frozen=True)
class DocumentFormat:
    extension: str
    label: str
    content_type: str
    as_attachment: bool


FORMATS = {
    "pdf": DocumentFormat("pdf", "PDF", "application/pdf", True),
    # The HTML is the customer's document, shown inline but locked down (see invoice_download).
    "html": DocumentFormat("html", "HTML", "text/html; charset=utf-8", False),
    "xml": DocumentFormat("xml", "XML", "application/xml", True),
}

# An invoice's HTML is a document, not one of our pages: no script, no requests anywhere, no forms, no
# framing by other sites; its styles are inline.
DOCUMENT_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; font-src data:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'self'; sandbox"
)


def delivery_label(delivery: InvoiceDelivery) -> str:
    """How one copy went out, as a CSR says it: "E-mailed to ada@example.com", "Print batch", "Portal"."""
    Method, Status = InvoiceDelivery.Method, InvoiceDelivery.Status
    if delivery.method == Method.EMAIL:
        return {
            Status.SENT: f"E-mailed to {delivery.recipient}",
            Status.PENDING: f"E-mail to {delivery.recipient} pending",
            Status.RETRYING: f"E-mail to {delivery.recipient} failed, will retry",
            Status.FAILED: f"E-mail to {delivery.recipient} failed",
        }.get(delivery.status, f"E-mail to {delivery.recipient}")
    if delivery.method == Method.PRINT:
        if delivery.status == Status.SENT or delivery.print_batch_id:
            return "In a print batch"
        if delivery.status == Status.FAILED:
            return "Print batch failed"
        return "Print batch pending"
    return "Customer portal"


def _delivery_rows(invoice: Invoice) -> list[dict[str, str]]:
    return [
        {"label": delivery_label(d), "status": d.status, "problem": d.status in ("retrying", "failed")}
        for d in invoice.deliveries.all()
    ]


def _invoice_row(invoice: Invoice) -> dict:
    rendered = invoice.status == Invoice.Status.RENDERED
    return {
        "invoice": invoice,
        "is_credit_note": invoice.kind == Invoice.Kind.CREDIT_NOTE,
        "deliveries": _delivery_rows(invoice),
        "formats": [fmt for fmt in FORMATS.values() if rendered and getattr(invoice, fmt.extension)],
    }


def invoices_section(request: HttpRequest, account: Account) -> str:
    """The account's invoices, newest first: two queries (invoices with their bill, their deliveries)."""
    invoices = selectors.account_invoices(account=account)
    return render_to_string(
        "invoicing/sections/invoices.html",
        {
            "account": account,
            "rows": [_invoice_row(invoice) for invoice in invoices],
            "limit": selectors.ACCOUNT_INVOICES_LIMIT,
            "locale": account_locale(account),
        },
        request=request,
    )


def invoice_panel(request: HttpRequest, statement, lines: list) -> RenderedPanel | None:
    """The statement page's Invoice panel: the bill's invoice and its downloads, or that it has none yet.
    Nothing for an external biller's statement (that biller invoices it; no query)."""
    if statement.channel != Channel.ENGINE:
        return None
    invoice = selectors.statement_invoice(statement=statement)
    html = render_to_string(
        "invoicing/panels/invoice.html",
        {
            "statement": statement,
            "row": _invoice_row(invoice) if invoice is not None else None,
            "locale": account_locale(statement.account),
        },
        request=request,
    )
    return RenderedPanel(html=html)


@staff_required
@require_GET
def invoice_download(request: HttpRequest, number: str, extension: str) -> FileResponse:
    """One stored document of an invoice. PDF and XML download as attachments (``?inline=1`` shows the PDF
    in the browser's viewer); the HTML is shown inline under a Content-Security-Policy that allows nothing
    but its own inline styles."""
    if not request.user.has_perm(VIEW_PERMISSION):
        raise PermissionDenied("You may not read invoices.")
    fmt = FORMATS.get(extension)
    if fmt is None:
        raise Http404(f"No such invoice format: {extension}.")
    try:
        invoice = selectors.invoice_by_number(number=number)
    except NotFound:
        raise Http404(f"No invoice {number}.") from None
    stored = getattr(invoice, fmt.extension)
    if invoice.status != Invoice.Status.RENDERED or not stored:
        raise Http404(f"Invoice {number} has no {fmt.label} yet (it is being rendered).")
    try:
        handle = stored.open("rb")
    except FileNotFoundError:
        raise Http404(f"The {fmt.label} of invoice {number} is missing from storage.") from None
    as_attachment = fmt.as_attachment and not (fmt.extension == "pdf" and request.GET.get("inline") == "1")
    response = FileResponse(
        handle,
        as_attachment=as_attachment,
        filename=f"{invoice.number}.{fmt.extension}",
        content_type=fmt.content_type,
    )
    if fmt.extension == "html":
        response["Content-Security-Policy"] = DOCUMENT_CSP
    response["X-Content-Type-Options"] = "nosniff"
    response["Cache-Control"] = "private, no-store"
    response["Referrer-Policy"] = "no-referrer"
    return response
