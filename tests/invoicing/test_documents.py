"""Invoice documents as the customer reads them: every field of source 003 in the PDF's text, with the
right amounts, in English, German, French and Spanish; consolidated, detailed and summary invoices; credit
notes; the compact layout; previews; an admin's CSS that names an external URL; French and Spanish credit
notes and e-mails; every shipped catalogue (de, fr, es) complete, compiled and served."""

from __future__ import annotations

import datetime as dt
import io
import re
import subprocess
from decimal import Decimal
from pathlib import Path

import pypdf
import pytest
from babel.dates import format_date
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po
from babel.numbers import format_currency
from django.conf import settings
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
# Every language an invoice can be printed in besides English (the msgids); each has a complete catalogue.
SHIPPED_LANGUAGES = ("de", "fr", "es")
PLURAL_EXPRESSIONS = {"de": "(n != 1)", "fr": "(n > 1)", "es": "(n != 1)"}
PLACEHOLDER = re.compile(r"%\((\w+)\)s")


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
        f"Invoice date {_babel('medium', invoice.invoice_date, 'en_US')}",
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
        f"Rechnungsdatum {invoice.invoice_date:%d.%m.%Y}",
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


def _babel(kind, value, locale):
    """What Babel itself prints for the locale: the invoice must say exactly that."""
    if kind == "money":
        return format_currency(Decimal(value), "EUR", locale=locale)
    return format_date(value, kind, locale=locale)


def test_french_invoice_has_french_labels_amounts_and_dates():
    statement = source_example_bill(name="Camille Dupont", language="fr", locale="fr_FR", currency="EUR")
    invoice, doc = _document(statement)
    assert (doc.language, doc.locale, doc.currency) == ("fr", "fr_FR", "EUR")
    raw = _text(render_document(doc).pdf)
    total = _babel("money", "355.08", "fr_FR")
    assert total.startswith("355,08") and total.endswith("€") and " " not in total  # a no-break space
    assert total in raw
    text = _flat(raw)
    for expected in (
        "Facture",
        f"Numéro de facture {invoice.number}",
        f"Numéro de client {statement.account.number}",
        f"Date de facture {_babel('medium', invoice.invoice_date, 'fr_FR')}",
        f"Échéance {_babel('medium', dt.date(2026, 11, 15), 'fr_FR')}",
        "Période de facturation 1 oct. 2026 – 31 oct. 2026",
        "Montant dû",
        f"Solde précédent {_flat(_babel('money', '100.00', 'fr_FR'))}",
        f"Total à payer {_flat(total)}",
        f"Merci de régler au plus tard le {_babel('long', dt.date(2026, 11, 15), 'fr_FR')}.",
        "Mobile 348,00 (25,20 ) 32,28 355,08",
        "Paiement Card payment (100,00 )",
        "Voix 780 min 1 000 min 220 min libres",
        "Coupon de paiement",
        "Page 1 sur 1",
    ):
        assert expected in text, expected
    for english in (
        "Total due",
        "Amount due",
        "Previous balance",
        "Payment slip",
        "Due date",
        "Invoice date",
    ):
        assert english not in text, english


def test_spanish_invoice_has_spanish_labels_amounts_and_dates():
    statement = source_example_bill(name="Lucía Pérez", language="es", locale="es_ES", currency="EUR")
    invoice, doc = _document(statement)
    assert (doc.language, doc.locale, doc.currency) == ("es", "es_ES", "EUR")
    raw = _text(render_document(doc).pdf)
    total = _babel("money", "355.08", "es_ES")
    assert total.startswith("355,08") and total.endswith("€") and total in raw
    text = _flat(raw)
    for expected in (
        "Factura",
        f"Número de factura {invoice.number}",
        f"Número de cliente {statement.account.number}",
        f"Fecha de factura {_babel('medium', invoice.invoice_date, 'es_ES')}",
        f"Vencimiento {_babel('medium', dt.date(2026, 11, 15), 'es_ES')}",
        "Periodo de facturación 1 oct 2026 – 31 oct 2026",
        "Importe a pagar",
        f"Saldo anterior {_flat(_babel('money', '100.00', 'es_ES'))}",
        f"Total a pagar {_flat(total)}",
        f"Pague antes del {_babel('long', dt.date(2026, 11, 15), 'es_ES')}.",
        "Móvil 348,00 -25,20 32,28 355,08",
        "Pago Card payment -100,00",
        "Voz 780 min 1.000 min 220 min libres",
        "Talón de pago",
        "Página 1 de 1",
    ):
        assert expected in text, expected
    for english in (
        "Total due",
        "Amount due",
        "Previous balance",
        "Payment slip",
        "Due date",
        "Invoice date",
    ):
        assert english not in text, english


CREDIT_NOTE_PHRASES = {
    "fr": (
        "Avoir",
        "Rectifie la facture INV-00000007 du 1 oct. 2026",
        "Solde créditeur (20,00 €)",
        "Aucun paiement n’est dû.",
        "Votre avoir",
    ),
    "es": (
        "Factura rectificativa",
        "Rectifica la factura INV-00000007 de fecha 1 oct 2026",
        "Saldo a su favor -20,00 €",
        "No hay ningún importe pendiente de pago.",
        "Su factura rectificativa",
    ),
}


@pytest.mark.parametrize("language, locale", [("fr", "fr_FR"), ("es", "es_ES")])
def test_credit_note_in_french_and_spanish(language, locale):
    title, corrects, credit_balance, nothing_due, subject_start = CREDIT_NOTE_PHRASES[language]
    statement = source_example_bill(language=language, locale=locale, currency="EUR")
    invoice, doc = _document(statement)
    doc.kind = Invoice.Kind.CREDIT_NOTE
    doc.corrects_number, doc.corrects_date = "INV-00000007", dt.date(2026, 10, 1)
    doc.total_due = Decimal("-20.00")
    text = _flat(_text(render_document(doc).pdf))
    for phrase in (title, corrects, credit_balance, nothing_due):
        assert phrase in text, phrase
    assert "Credit note" not in text and "Corrects invoice" not in text
    invoice.kind = Invoice.Kind.CREDIT_NOTE
    with translation.override(language):
        subject = render_to_string("invoicing/email/invoice_subject.txt", {"invoice": invoice}).strip()
    assert subject == f"{subject_start} {invoice.number}"


EMAIL_PHRASES = {
    "fr": (
        "Votre facture",
        "Bonjour Camille Dupont,",
        "Montant dû\u202f: {amount}, à régler au plus tard le {due}.",
        "Madame, Monsieur,",
    ),
    "es": (
        "Su factura",
        "Estimado/a Camille Dupont:",
        "Importe a pagar: {amount}, con vencimiento el {due}.",
        "Estimado/a cliente:",
    ),
}


@pytest.mark.parametrize("language, locale", [("fr", "fr_FR"), ("es", "es_ES")])
def test_invoice_email_in_french_and_spanish(language, locale):
    subject, greeting, due, anonymous_greeting = EMAIL_PHRASES[language]
    statement = source_example_bill(name="Camille Dupont", language=language, locale=locale, currency="EUR")
    [invoice] = invoices_issue(statement_ids=[statement.pk])
    context = {
        "invoice": invoice,
        "recipient_name": "Camille Dupont",
        "payment_url": "https://pay.example.com/",
        "support_contact": "support@example.com",
    }
    with translation.override(language):
        rendered_subject = render_to_string("invoicing/email/invoice_subject.txt", context).strip()
        body = render_to_string("invoicing/email/invoice_body.txt", context)
        html = render_to_string("invoicing/email/invoice_body.html", context)
        context["recipient_name"] = ""
        anonymous = render_to_string("invoicing/email/invoice_body.txt", context)
    assert rendered_subject == f"{subject} {invoice.number}"
    assert greeting in body and greeting in html
    amount, due_date = _babel("money", "355.08", locale), _babel("medium", dt.date(2026, 11, 15), locale)
    assert due.format(amount=amount, due=due_date) in body
    assert invoice.number in body and _babel("medium", invoice.invoice_date, locale) in body
    assert anonymous_greeting in anonymous and "Camille" not in anonymous
    for english in ("Dear", "please find attached", "Amount due", "Kind regards", "Questions about"):
        assert english not in body and english not in html, english


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
    # A charge line's period, as short as the locale writes it (so it fits beside the description).
    november, december = (
        (dt.date(2026, 11, 1), dt.date(2026, 11, 30)),
        (dt.date(2026, 12, 1), dt.date(2027, 1, 31)),
    )
    assert fmt.lperiod(*november, Doc) == "1.–30. Nov. 2026"
    assert fmt.lperiod(*november, Odd) == "Nov 1\u2009–\u200930, 2026"  # unknown locale: en_US
    assert fmt.lperiod(*december, Doc) == "1. Dez. 2026\u2009–\u200931. Jan. 2027"
    assert fmt.lperiod(dt.date(2026, 11, 1), None, Doc) == "01.11.2026"
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


@pytest.mark.parametrize("language", SHIPPED_LANGUAGES)
def test_catalogue_is_complete_and_compiled(language):
    po_path = LOCALE_DIR / language / "LC_MESSAGES" / "django.po"
    mo_path = po_path.with_suffix(".mo")
    catalog = _catalog_of_po(po_path)
    messages = [m for m in catalog if m.id]
    assert len(messages) > 80
    for message in messages:
        assert "fuzzy" not in message.flags, message.id
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        assert all(strings), message.id
    assert "#, fuzzy" not in po_path.read_text(encoding="utf-8")
    assert str(catalog.locale) == language
    assert (catalog.num_plurals, catalog.plural_expr) == (2, PLURAL_EXPRESSIONS[language])
    for message in messages:
        ids = message.id if isinstance(message.id, tuple) else (message.id,)
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        assert len(strings) == (2 if len(ids) == 2 else 1), message.id
        placeholders = {frozenset(PLACEHOLDER.findall(text)) for text in ids + strings}
        assert len(placeholders) == 1, (message.id, message.string)
    german = {
        (m.id, m.context) for m in _catalog_of_po(LOCALE_DIR / "de" / "LC_MESSAGES" / "django.po") if m.id
    }
    assert {(m.id, m.context) for m in messages} == german, "every language has the German catalogue's msgids"
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


def test_every_configured_language_but_english_ships_a_catalogue():
    assert {code for code, _name in settings.LANGUAGES} - {"en"} == set(SHIPPED_LANGUAGES)


@pytest.mark.parametrize("language", SHIPPED_LANGUAGES)
def test_django_serves_the_invoicing_translations(language):
    """No earlier app's catalogue shadows one of ours (Django prefers the first app that translates a msgid),
    and plural forms pick the right string."""
    catalog = _catalog_of_po(LOCALE_DIR / language / "LC_MESSAGES" / "django.po")
    with translation.override(language):
        for m in catalog:
            if not m.id:
                continue
            if isinstance(m.id, tuple):
                for n, index in ((1, 0), (2, 1), (0, 0 if language == "fr" else 1)):
                    assert translation.ngettext(m.id[0], m.id[1], n) == m.string[index], (m.id, n)
            elif m.context:
                assert translation.pgettext(m.context, m.id) == m.string, m.id
            else:
                assert translation.gettext(m.id) == m.string, m.id


@pytest.mark.parametrize("language", SHIPPED_LANGUAGES)
def test_every_template_string_is_in_the_catalogue(language, tmp_path):
    """makemessages over the templates finds nothing the catalogue lacks."""
    catalog_ids = {m.id for m in _catalog_of_po(LOCALE_DIR / language / "LC_MESSAGES" / "django.po") if m.id}
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
