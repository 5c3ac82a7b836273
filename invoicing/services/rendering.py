"""Rendering invoice documents: HTML from Django templates, PDF from that HTML with WeasyPrint, XML from
the same document (invoicing.exports), stored once as frozen files.

``invoices_render`` issues what is missing (invoicing.services.issuing) and renders every issued invoice of
the given bills that has no documents yet. It is idempotent and safe to run twice at once: documents are
rendered outside any transaction, then saved a batch at a time under the invoices' row locks, each only if
the invoice still has none, so an issued invoice's files are written exactly once and never change
afterwards (template edits apply to invoices rendered later).
"""

from __future__ import annotations

import functools
import gc
import hashlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from django.core.files.base import ContentFile
from django.db import transaction
from django.template.loader import render_to_string
from django.utils import timezone, translation

from statements.models import Statement

from ..content import InvoiceDocument, invoice_documents
from ..exports import invoice_xml
from ..models import Invoice, InvoiceTemplate
from .issuing import invoice_draft, invoiceable, invoices_issue, pick, series_by_type, templates_by_type

logger = logging.getLogger(__name__)

# A set of bills is read, rendered and stored this many at a time: a fixed number of queries and one
# transaction per batch, whatever its size.
RENDER_BATCH = 50


@dataclass
class RenderResult:
    """Which bills have their documents now, and a note for a billing run's step result."""

    rendered: list[int] = field(default_factory=list)  # statement ids
    failed: dict[int, str] = field(default_factory=dict)  # statement id -> why
    note: str = ""


@dataclass
class Rendered:
    html: bytes
    pdf: bytes
    xml: bytes
    pages: int
    timings: dict[str, float]  # seconds: template, layout, pdf, xml


def _refuse_fetch():
    """WeasyPrint's URL fetcher: an invoice is self-contained; nothing is fetched from anywhere (a template
    or an admin's CSS naming an external URL must not make rendering call out). Only data: URLs are read;
    any other URL is refused, which WeasyPrint logs and skips (WeasyPrint 70 wants a URLFetcher: a plain
    function that raises makes the whole rendering fail)."""
    from weasyprint.urls import URLFetcher

    return URLFetcher(allowed_protocols=("data",), fail_on_errors=False, allow_redirects=False)


def default_style() -> InvoiceTemplate:
    return InvoiceTemplate(code="default", name="Default", layout=InvoiceTemplate.Layout.STANDARD)


def document_html(document: InvoiceDocument) -> str:
    """The invoice as a self-contained HTML page (its print CSS inline), in the invoice's language."""
    style = document.template or default_style()
    with translation.override(document.language):
        return render_to_string(style.template_name, {"doc": document, "style": style})


def _font_config():
    """One FontConfiguration per process, shared by every invoice and its cached stylesheets (WeasyPrint
    wants the stylesheets of a document and the document to use the same one)."""
    global _FONT_CONFIG
    if _FONT_CONFIG is None:
        from weasyprint.text.fonts import FontConfiguration

        _FONT_CONFIG = FontConfiguration()
    return _FONT_CONFIG


_FONT_CONFIG = None
_STYLE_OPEN, _STYLE_CLOSE = "<style>", "</style>"


@functools.lru_cache(maxsize=64)
def _print_css(css: str):
    """The parsed print stylesheet and its @counter-style rules, once per distinct stylesheet text per
    process. The text is the key: it is what a layout, an accent colour, an admin's extra CSS and the
    language (the page counter's words) make, so two templates that print alike share one entry."""
    from weasyprint import CSS
    from weasyprint.css.counters import CounterStyle

    counter_style = CounterStyle()
    sheet = CSS(
        string=css, url_fetcher=_refuse_fetch(), font_config=_font_config(), counter_style=counter_style
    )
    return sheet, counter_style


def _split_style(html: str) -> tuple[str, str | None]:
    """(the HTML without its first <style> element, that element's CSS), or (html, None) if it has none.
    The browser's parser ends a <style> at the first </style> too, so this reads the same CSS."""
    start = html.find(_STYLE_OPEN)
    end = html.find(_STYLE_CLOSE, start + len(_STYLE_OPEN)) if start >= 0 else -1
    if end < 0:
        return html, None
    return html[:start] + html[end + len(_STYLE_CLOSE) :], html[start + len(_STYLE_OPEN) : end]


def document_pdf(html: str) -> tuple[bytes, int, float, float]:
    """(pdf bytes, pages, layout seconds, write seconds). The HTML's inline print CSS is parsed once per
    process (``_print_css``) and applied as a stylesheet: what prints is the same as the HTML file."""
    from weasyprint import HTML

    started = time.perf_counter()
    body, css = _split_style(html)
    options: dict[str, Any] = {"font_config": _font_config()}
    if css is not None:
        sheet, counter_style = _print_css(css)
        options.update(stylesheets=[sheet], counter_style=counter_style)
    rendered = HTML(string=body, url_fetcher=_refuse_fetch()).render(**options)
    laid_out = time.perf_counter()
    pdf = rendered.write_pdf()
    _freeze_long_lived()
    return pdf, len(rendered.pages), laid_out - started, time.perf_counter() - laid_out


_FROZEN = False


def _freeze_long_lived() -> None:
    """After the process's first invoice, move every object alive then (Django, the templates, WeasyPrint's
    fonts and cached stylesheets: they live as long as the process) out of the cyclic garbage collector's
    view. A render allocates hundreds of thousands of objects, so full collections come often, and each one
    walked all of those again (bench_invoices, one process: 6.6 -> 7.8 invoices per second, p95 250 ->
    155 ms). Objects are still freed as usual; only cycles among the frozen ones would stay, and they are
    meant to stay."""
    global _FROZEN
    if not _FROZEN:
        gc.freeze()
        _FROZEN = True


def render_document(document: InvoiceDocument) -> Rendered:
    started = time.perf_counter()
    html = document_html(document)
    templated = time.perf_counter()
    pdf, pages, layout, write = document_pdf(html)
    xml_started = time.perf_counter()
    xml = invoice_xml(document)
    return Rendered(
        html=html.encode(),
        pdf=pdf,
        xml=xml,
        pages=pages,
        timings={
            "template": templated - started,
            "layout": layout,
            "pdf": write,
            "xml": time.perf_counter() - xml_started,
        },
    )


def _store(invoice: Invoice, rendered: Rendered) -> None:
    """Write the invoice's three files and mark it rendered (on the instance; the caller saves it)."""
    for extension, content in (("pdf", rendered.pdf), ("html", rendered.html), ("xml", rendered.xml)):
        file_field = getattr(invoice, extension)
        name = invoice.document_path(extension)
        # A file already at this name is left from an attempt whose transaction rolled back (the invoice
        # has no documents: the caller checked under its lock).
        if file_field.storage.exists(name):
            file_field.storage.delete(name)
        file_field.save(name, ContentFile(content), save=False)
        setattr(invoice, f"{extension}_sha256", hashlib.sha256(content).hexdigest())
    invoice.status = Invoice.Status.RENDERED
    invoice.page_count = rendered.pages
    invoice.render_attempts += 1
    invoice.render_error = ""
    invoice.rendered_at = timezone.now()


# What storing an invoice's documents writes on its row.
RENDERED_FIELDS = [
    "pdf",
    "html",
    "xml",
    "pdf_sha256",
    "html_sha256",
    "xml_sha256",
    "status",
    "page_count",
    "render_attempts",
    "render_error",
    "rendered_at",
]


def _render_batch(invoices: list[Invoice], result: RenderResult) -> None:
    """Render a batch's invoices one by one outside any transaction, then store what rendered in one."""
    documents = invoice_documents(invoices)
    rendered: dict[int, Rendered] = {}
    for invoice in invoices:
        try:
            rendered[invoice.pk] = render_document(documents[invoice.statement_id])
        except Exception as exc:  # noqa: BLE001 - one bad document must not stop the others
            logger.exception("Invoice %s could not be rendered", invoice.number)
            _record_failure(invoice, f"{type(exc).__name__}: {exc}")
            result.failed[invoice.statement_id] = f"{type(exc).__name__}: {exc}"[:300]
    if rendered:
        _save_rendered(rendered)
    result.rendered.extend(i.statement_id for i in invoices if i.pk in rendered)


def _save_rendered(rendered: dict[int, Rendered]) -> None:
    """Store the documents of a render batch in one transaction, in a fixed number of queries: the
    invoices are locked in id order (as every renderer locks them, so two never deadlock), and only those
    that still have no documents get these files; an invoice a concurrent renderer stored meanwhile keeps
    its own and nothing of this one is written for it. Their deliveries start once for the batch."""
    from .delivery import deliveries_queue

    with transaction.atomic():
        todo = [
            invoice
            for invoice in Invoice.objects.select_for_update(of=("self",))
            .select_related("series")
            .filter(pk__in=rendered)
            .order_by("pk")
            if invoice.status != Invoice.Status.RENDERED
        ]
        if not todo:
            return
        for invoice in todo:
            _store(invoice, rendered[invoice.pk])
        Invoice.objects.bulk_update(todo, RENDERED_FIELDS)
        deliveries_queue(invoice_ids=[invoice.pk for invoice in todo])


def _record_failure(invoice: Invoice, error: str) -> None:
    Invoice.objects.filter(pk=invoice.pk).exclude(status=Invoice.Status.RENDERED).update(
        status=Invoice.Status.FAILED, render_error=error[:2000], render_attempts=invoice.render_attempts + 1
    )


def invoices_render(*, statement_ids: list[int], actor: Any = None) -> RenderResult:
    """Issue and render the invoices of these bills (see the module docstring). Bills not invoiced by this
    product (an external biller's statements) are left out of ``rendered`` and named in the note."""
    result = RenderResult()
    if not statement_ids:
        return result
    invoices_issue(statement_ids=statement_ids, actor=actor)
    todo = list(
        Invoice.objects.filter(statement_id__in=statement_ids)
        .select_related("series", "template")
        .order_by("pk")
    )
    for invoice in todo:
        if invoice.status == Invoice.Status.RENDERED:
            result.rendered.append(invoice.statement_id)
    pending = [i for i in todo if i.status != Invoice.Status.RENDERED]
    for start in range(0, len(pending), RENDER_BATCH):
        _render_batch(pending[start : start + RENDER_BATCH], result)
    skipped = len(set(statement_ids)) - len({i.statement_id for i in todo})
    notes = []
    if result.failed:
        notes.append(f"{len(result.failed)} invoice(s) could not be rendered (retried daily).")
    if skipped:
        notes.append(f"{skipped} bill(s) are not invoiced by this product.")
    result.note = " ".join(notes)
    return result


def invoice_preview(*, statement_id: int, template: InvoiceTemplate | None = None) -> InvoiceDocument:
    """The document a bill's invoice would be if it were issued now (nothing is written): the admin's
    preview, before issuing or after a template change. The number reads PREVIEW. Raises
    Statement.DoesNotExist for a bill this product does not invoice."""
    statement = (
        invoiceable(Statement.objects.filter(pk=statement_id))
        .select_related("account__billing_profile", "corrects")
        .get()
    )
    account_type = statement.account.type
    draft = invoice_draft(
        statement=statement,
        series=pick(series_by_type(), account_type),
        template=template or pick(templates_by_type(), account_type),
        number="PREVIEW",
    )
    return invoice_documents([draft], preview=True)[statement.pk]
