"""Invoice documents as the customer reads them: every field of source 003 in the PDF's text, with the
right amounts, in English and German; consolidated, detailed and summary invoices; credit notes; the
compact layout; previews; an admin's CSS that names an external URL; the German catalogue complete."""

from __future__ import annotations

import datetime as dt
import io
import subprocess
from decimal import Decimal
from pathlib import Path

import pypdf
import pytest
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po
from django.template.loader import render_to_string
from django.test import override_settings
from django.utils import translation

from invoicing.content import UsageEvent, invoice_documents, payment_reference
from invoicing.models import Invoice, InvoiceTemplate
from invoicing.services import invoices_issue
from invoicing.services.rendering import render_document
from invoicing.templatetags import invoice_format as fmt

from .builders import hierarchy_bill, source_example_bill

pytestmark = pytest.mark.django_db

LOCALE_DIR = Path(__file__).resolve().parents[2] / "invoicing" / "locale"


def _document(statement, **changes):
    [invoice] = invoices_issue(statement_ids=[statement.pk])
    for name, value in changes.items():
        setattr(invoice, name, value)
    if changes:
        invoice.save()
    return invoice, invoice_documents([invoice])[statement.pk]


def _text(pdf: bytes) -> str:
    reader = pypdf.PdfReader(io.BytesIO(pdf))
    return "\n".join(page.extract_text() for page in reader.pages)


def _flat(text: str) -> str:
    return " ".join(text.replace("\xa0", " ").split())


def test_source_example_invoice_says_everything_with_the_right_amounts():
    statement = source_example_bill()
    invoice, doc = _document(statement)
    rendered = render_document(doc)
    text = _flat(_text(rendered.pdf))
    assert rendered.pages == 1
    for expected in (
        "Invoice",
        invoice.number,
        "Invoice date Dec 1, 2026",
        f"Account number {statement.account.number}",
        "Bill period Oct 1, 2026 – Oct 31, 2026",
        "Due date Nov 15, 2026",
        "Statement number S-000348",
        "Ada Lovelace",
        "12 Analytical Row",
        "NW1 2AB London",
        # Amount due: previous balance, the payment as a credit, new charges, taxes, total.
        "Previous balance $100.00",
        "Payments ($100.00)",
        "New charges $322.80",
        "Taxes $32.28",
        "Total due $355.08",
        # Source 003: gross 348, discount (25.20), tax 32.28 for a net of 355.08.
        "Mobile 348.00 (25.20) 32.28 355.08",
        "Total current charges 348.00 (25.20) 32.28 355.08",
        # The payment since the last bill, its kind translated.
        "Oct 20, 2026 Payment Card payment (100.00)",
        # Charge details per device, with quantities and unit prices.
        "+44 7700 900123",
        "Voice: 480 min x 0.10 Usage 480 min 0.10 48.00",
        "Loyalty 7.24% Discount (25.20)",
        # Free minutes left (the non-currency balance).
        "780 min 1,000 min 220 min left",
        "Thank you for being a customer.",
        "Payment slip",
        payment_reference(invoice.number),
        "support@example.com",
        "https://pay.example.com/",
        "Page 1 of 1",
    ):
        assert expected in text, expected
    assert "PREVIEW" not in text
    assert set(rendered.timings) == {"template", "layout", "pdf", "xml"}


def test_bill_information_repeats_on_every_page():
    statement = hierarchy_bill()
    invoice, doc = _document(statement)
    rendered = render_document(doc)
    assert rendered.pages >= 2
    reader = pypdf.PdfReader(io.BytesIO(rendered.pdf))
    for number, page in enumerate(reader.pages, start=1):
        text = _flat(page.extract_text())
        assert invoice.number in text
        assert statement.account.number in text
        assert "Due date Nov 15, 2026" in text
        assert "Oct 1, 2026 – Oct 31, 2026" in text
        assert f"Page {number} of {rendered.pages}" in text


def test_german_invoice_has_german_labels_amounts_and_dates():
    statement = source_example_bill(name="Erika Mustermann", language="de", locale="de_DE", currency="EUR")
    invoice, doc = _document(statement)
    assert (doc.language, doc.locale, doc.currency) == ("de", "de_DE", "EUR")
    text = _flat(_text(render_document(doc).pdf))
    for expected in (
        "Rechnung",
        "Rechnungsdatum 01.12.2026",
        "Fällig am 15.11.2026",
        "Abrechnungszeitraum 01.10.2026 – 31.10.2026",
        "Vorheriger Saldo 100,00 €",
        "Zahlungen -100,00 €",
        "Gesamtbetrag 355,08 €",
        "Mobilfunk 348,00 -25,20 32,28 355,08",
        "Bitte zahlen Sie bis zum 15. November 2026.",
        "Zahlung Card payment -100,00",
        "220 min übrig",
        "Zahlschein",
        "Seite 1 von 1",
    ):
        assert expected in text, expected
    for english in ("Total due", "Previous balance", "Payment slip", "Due date"):
        assert english not in text


def test_consolidated_invoice_shows_each_child_and_the_summarized_ones_products():
    statement = hierarchy_bill()
    invoice, doc = _document(statement)
    text = _flat(_text(render_document(doc).pdf))
    assert "Acme Holdings" in text
    for child in doc.children:
        assert f"Account {child.number} · {child.name} · Total ${child.total:,.2f}" in text
    summarized = doc.children[2]
    assert summarized.summarized and "Summarized by product (60 lines)." in text
    for product, total in summarized.products:
        assert f"{product} {total:,.2f}" in text
    # The itemized children list their devices; the summarized one does not.
    assert f"{doc.children[0].number}-0" in text
    assert f"{summarized.number}-0" not in text


def _events(n):
    start = dt.datetime(2026, 10, 3, 9, 5, tzinfo=dt.UTC)
    return [UsageEvent(start + dt.timedelta(hours=i), "voice", Decimal(3 + i), "min") for i in range(n)]


def fake_usage_events(*, statement_ids, limit):
    return {sid: {"+44 7700 900123": (_events(min(3, limit)), 7)} for sid in statement_ids}


@override_settings(INVOICE_USAGE_EVENTS="tests.invoicing.test_documents.fake_usage_events")
def test_usage_events_print_only_on_detailed_invoices():
    statement = source_example_bill()
    [invoice] = invoices_issue(statement_ids=[statement.pk])
    assert invoice.format == Invoice.Format.DETAILED
    detailed = invoice_documents([invoice])[statement.pk]
    text = _flat(_text(render_document(detailed).pdf))
    assert "Usage events · +44 7700 900123" in text
    assert "10/3/26, 9:05" in text and "… and 4 more events" in text
    invoice.format = Invoice.Format.SUMMARY
    summary = invoice_documents([invoice])[statement.pk]
    assert summary.services[0].events == []
    text = _flat(_text(render_document(summary).pdf))
    assert "Usage events" not in text and "more events" not in text
    assert "Total current charges 348.00 (25.20) 32.28 355.08" in text


def test_credit_note_title_and_the_invoice_it_corrects():
    statement = source_example_bill()
    invoice, doc = _document(statement)
    doc.kind = Invoice.Kind.CREDIT_NOTE
    doc.corrects_number, doc.corrects_date = "INV-00000007", dt.date(2026, 10, 1)
    doc.total_due = Decimal("-20.00")
    text = _flat(_text(render_document(doc).pdf))
    assert "Credit note" in text
    assert "Corrects invoice INV-00000007 of Oct 1, 2026" in text
    assert "Credit balance ($20.00)" in text
    # Nothing to pay: no payment slip.
    assert "No payment is due." in text and "Payment slip" not in text


def test_compact_layout_renders_the_same_content_and_preview_banner():
    statement = source_example_bill()
    invoice, doc = _document(statement)
    doc.template = InvoiceTemplate(code="compact", name="Compact", layout=InvoiceTemplate.Layout.COMPACT)
    doc.preview = True
    rendered = render_document(doc)
    assert 'class="layout-compact"' in rendered.html.decode()
    text = _flat(_text(rendered.pdf))
    assert "PREVIEW — not issued" in text
    for expected in ("Total due $355.08", "348.00 (25.20) 32.28 355.08", "220 min left", "Payment slip"):
        assert expected in text


def test_accent_header_footer_and_external_css_is_never_fetched(monkeypatch):
    statement = source_example_bill()
    invoice, doc = _document(statement)
    doc.template = InvoiceTemplate(
        code="x",
        name="X",
        accent_color="#aa3300",
        header_text="Your network, your way",
        footer_text="Registered in England No. 1234567",
        extra_css='@import url("https://evil.example/x.css");'
        " body { background: url(http://evil.example/b.png); }"
        " h2 > span { color: red } </style><script>alert(1)</script>",
    )
    fetched = []
    from weasyprint.urls import URLFetcher

    real_fetch = URLFetcher.fetch

    def spy(self, url, headers=None):
        fetched.append(url)
        return real_fetch(self, url, headers)

    def no_network(*args, **kwargs):
        raise AssertionError("rendering opened a network connection")

    monkeypatch.setattr(URLFetcher, "fetch", spy)
    monkeypatch.setattr(URLFetcher, "_open", no_network, raising=False)
    monkeypatch.setattr("socket.create_connection", no_network)
    rendered = render_document(doc)
    html = rendered.html.decode()
    assert "#aa3300" in html and "h2 > span" in html
    assert "</style><script>" not in html
    text = _flat(_text(rendered.pdf))
    assert "Your network, your way" in text and "Registered in England No. 1234567" in text
    # WeasyPrint asked for the external URLs and was refused (rendering still succeeded).
    assert any("evil.example" in url for url in fetched)


def test_formatting_filters_and_unknown_locale_falls_back():
    class Doc:
        locale, currency = "de_DE", "EUR"

    class Odd:
        locale, currency = "xx_NOWHERE", "JPY"

    assert fmt.money(Decimal("1234.5"), Doc) == "1.234,50\xa0€"
    assert fmt.amount(Decimal("-25.2"), Doc) == "-25,20"
    assert fmt.money(Decimal("-25.2"), Odd) == "(¥25)"
    assert fmt.qty(Decimal("780.000"), Doc) == "780" and fmt.qty(Decimal("1.50"), Doc) == "1,5"
    assert fmt.price(Decimal("0.01250000"), Doc) == "0,0125"
    assert fmt.ldate(dt.date(2026, 11, 1), Doc) == "01.11.2026"
    assert fmt.ldate_long(dt.date(2026, 11, 1), Odd) == "November 1, 2026"
    assert fmt.money(None, Doc) == "" and fmt.money("not a number", Doc) == ""
    with translation.override("de"):
        assert fmt.kind_label("write_off") == "Abschreibung"
        assert fmt.line_type_label("recurring") == "Grundgebühr"
        assert fmt.kind_label("something_new") == "Something new"


def test_invoice_email_is_translated():
    statement = source_example_bill(name="Erika Mustermann", language="de", locale="de_DE", currency="EUR")
    [invoice] = invoices_issue(statement_ids=[statement.pk])
    context = {
        "invoice": invoice,
        "recipient_name": "Erika Mustermann",
        "payment_url": "https://pay.example.com/",
        "support_contact": "support@example.com",
    }
    with translation.override("de"):
        subject = render_to_string("invoicing/email/invoice_subject.txt", context).strip()
        body = render_to_string("invoicing/email/invoice_body.txt", context)
        html = render_to_string("invoicing/email/invoice_body.html", context)
    assert subject == f"Ihre Rechnung {invoice.number}"
    assert "Guten Tag Erika Mustermann," in body
    assert "Zu zahlender Betrag: 355,08\xa0€, fällig am 15.11.2026." in body
    assert "&amp;" not in body
    assert "355,08\xa0€" in html and 'href="https://pay.example.com/"' in html
    with translation.override("en"):
        assert render_to_string("invoicing/email/invoice_subject.txt", context).strip() == (
            f"Your invoice {invoice.number}"
        )


def _catalog_of_po(path):
    with open(path, "rb") as fh:
        return read_po(fh)


def test_german_catalogue_is_complete_and_compiled():
    po_path = LOCALE_DIR / "de" / "LC_MESSAGES" / "django.po"
    mo_path = po_path.with_suffix(".mo")
    catalog = _catalog_of_po(po_path)
    messages = [m for m in catalog if m.id]
    assert len(messages) > 80
    for message in messages:
        assert "fuzzy" not in message.flags, message.id
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        assert all(strings), message.id
    assert "#, fuzzy" not in po_path.read_text(encoding="utf-8")
    with open(mo_path, "rb") as fh:
        compiled = read_mo(fh)

    def key(m):
        context = m.context.decode() if isinstance(m.context, bytes) else m.context
        return (tuple(m.id) if isinstance(m.id, list | tuple) else m.id, context)

    def value(m):
        return tuple(m.string) if isinstance(m.string, list | tuple) else m.string

    expected = {key(m): value(m) for m in messages}
    actual = {key(m): value(m) for m in compiled if m.id}
    assert actual == expected, "django.mo is out of date: run compilemessages"


def test_every_template_string_is_in_the_german_catalogue(tmp_path):
    """makemessages over the templates finds nothing the catalogue lacks."""
    catalog_ids = {m.id for m in _catalog_of_po(LOCALE_DIR / "de" / "LC_MESSAGES" / "django.po") if m.id}
    root = Path(__file__).resolve().parents[2]
    from django.utils.translation import template as trans_template

    sources = sorted((root / "templates" / "invoicing").rglob("*.*"))
    assert sources
    script = "\n".join(trans_template.templatize(p.read_text(encoding="utf-8")) for p in sources)
    (tmp_path / "t.py").write_text(script, encoding="utf-8")
    pot = tmp_path / "t.pot"
    subprocess.run(
        [
            "xgettext", "--language=Python", "--from-code=UTF-8", "--keyword=gettext_noop",
            "--keyword=gettext", "--keyword=ngettext:1,2", "--keyword=pgettext:1c,2",
            "--keyword=npgettext:1c,2,3", "-o", str(pot), str(tmp_path / "t.py"),
        ],
        check=True,
    )  # fmt: skip
    # xgettext's header is a template ("nplurals=INTEGER"); make it one Babel can read.
    pot.write_text(
        pot.read_text(encoding="utf-8")
        .replace("nplurals=INTEGER; plural=EXPRESSION;", "nplurals=2; plural=(n != 1);")
        .replace("charset=CHARSET", "charset=UTF-8"),
        encoding="utf-8",
    )
    found = {m.id for m in _catalog_of_po(pot) if m.id}
    assert found and found <= catalog_ids, found - catalog_ids
