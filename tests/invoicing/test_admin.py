"""Django admin for invoicing: series (with their gapless counters), templates and their preview, the
settings singleton, the read-only invoices, deliveries (Retry now) and print batches, and the preview of any
bill's invoice before it is issued."""

from __future__ import annotations

import html
from decimal import Decimal

import pytest
from django.core.files.base import ContentFile
from django.urls import reverse

from billing_mgmt.models import AuditRecord, NumberSeries
from billing_mgmt.numbering import SeriesSpec, get_series
from invoicing.models import (
    Invoice,
    InvoiceDelivery,
    InvoiceSeries,
    InvoiceTemplate,
    InvoicingSettings,
    PrintBatch,
)
from invoicing.services import invoices_render
from statements.models import Statement

from .builders import _statement, account, source_example_bill

pytestmark = pytest.mark.django_db


def _messages(response) -> list[str]:
    return [str(m) for m in response.context["messages"]] if response.context else []


# --- invoice series -----------------------------------------------------------------------------------------


def test_add_series_creates_its_gapless_counter_and_is_audited(admin_client):
    response = admin_client.post(
        reverse("admin:invoicing_invoiceseries_add"),
        {
            "code": "biz", "legal_name": "Acme Business Ltd", "address": "1 Main St", "tax_id": "GB123",
            "account_type": "business", "active": "on", "prefix": "B-", "padding": "5",
        },
    )  # fmt: skip
    assert response.status_code == 302, response.context["adminform"].form.errors
    series = InvoiceSeries.objects.get(code="biz")
    counter = series.number_series
    assert (counter.code, counter.prefix, counter.padding, counter.gapless) == ("invoice-biz", "B-", 5, True)
    assert AuditRecord.objects.filter(action="invoice_series.create", object_id=str(series.pk)).exists()

    page = admin_client.get(
        reverse("admin:invoicing_invoiceseries_change", args=[series.pk])
    ).content.decode()
    assert reverse("admin:billing_mgmt_numberseries_change", args=[counter.pk]) in page
    assert "B-00001" in page  # the next number, read-only
    assert 'name="prefix"' not in page  # edited on the counter from now on

    response = admin_client.post(
        reverse("admin:invoicing_invoiceseries_change", args=[series.pk]),
        {"legal_name": "Acme Business Limited", "address": "1 Main St", "tax_id": "GB123",
         "account_type": "business", "active": "on"},
    )  # fmt: skip
    assert response.status_code == 302
    change = AuditRecord.objects.get(action="invoice_series.update")
    assert change.before["legal_name"] == "Acme Business Ltd"
    assert change.after["legal_name"] == "Acme Business Limited"
    assert InvoiceSeries.objects.get(pk=series.pk).code == "biz"


def test_add_series_refuses_a_code_whose_counter_is_not_gapless(admin_client):
    get_series("invoice-clash", SeriesSpec(name="Not gapless"))
    response = admin_client.post(
        reverse("admin:invoicing_invoiceseries_add"),
        {
            "code": "clash",
            "legal_name": "X",
            "account_type": "",
            "active": "on",
            "prefix": "",
            "padding": "6",
        },
    )
    assert response.status_code == 200
    assert "is not gapless" in str(response.context["adminform"].form.errors["code"])
    assert not InvoiceSeries.objects.filter(code="clash").exists()


def test_add_series_validates_prefix_and_one_active_default(admin_client):
    from invoicing.services import default_series

    default_series()
    response = admin_client.post(
        reverse("admin:invoicing_invoiceseries_add"),
        {"code": "second", "legal_name": "X", "account_type": "", "active": "on", "prefix": "A B",
         "padding": "0"},
    )  # fmt: skip
    errors = response.context["adminform"].form.errors
    assert "prefix" in errors and "padding" in errors
    assert "__all__" in errors  # a second active default series
    assert not NumberSeries.objects.filter(code="invoice-second").exists()


def test_series_cannot_be_deleted(admin_client):
    from invoicing.services import default_series

    series = default_series()
    response = admin_client.post(
        reverse("admin:invoicing_invoiceseries_delete", args=[series.pk]), {"post": "yes"}
    )
    assert response.status_code == 403
    assert InvoiceSeries.objects.filter(pk=series.pk).exists()


# --- invoice templates and their preview --------------------------------------------------------------------


@pytest.fixture
def template(db) -> InvoiceTemplate:
    return InvoiceTemplate.objects.create(code="consumer", name="Consumer look", account_type="consumer")


def test_template_list_filters_and_preview_link(admin_client, template):
    InvoiceTemplate.objects.create(
        code="biz", name="Business look", account_type="business", layout="compact"
    )
    page = admin_client.get(reverse("admin:invoicing_invoicetemplate_changelist") + "?layout=compact")
    body = page.content.decode()
    assert "Business look" in body and "Consumer look" not in body
    assert admin_client.get(reverse("admin:invoicing_invoicetemplate_changelist")).status_code == 200
    body = admin_client.get(reverse("admin:invoicing_invoicetemplate_changelist")).content.decode()
    assert reverse("admin:invoicing_invoicetemplate_preview", args=[template.pk]) in body


def test_template_preview_of_the_newest_engine_bill_writes_nothing(admin_client, template):
    older = source_example_bill()
    newer = _statement(older.account, number="S-NEWER", new_charges=Decimal("7.00"), taxes=Decimal(0))
    # Same statement date: the later one is the newer.
    audits = AuditRecord.objects.count()
    url = reverse("admin:invoicing_invoicetemplate_preview", args=[template.pk])
    response = admin_client.get(url)
    assert response.status_code == 200
    assert response.context["statement"] == Statement.objects.get(pk=newer.pk)
    body = response.content.decode()
    assert 'sandbox=""' in body
    # The whole document, escaped into the attribute (a bare quote would end it early).
    srcdoc = body.split('srcdoc="', 1)[1].split('"', 1)[0]
    assert "&lt;html" in srcdoc and "<" not in srcdoc
    assert "PREVIEW" in html.unescape(srcdoc) and html.unescape(srcdoc).rstrip().endswith("</html>")
    assert 'title="Invoice preview of bill S-NEWER"' in body

    # Another bill, by number or by id; the PDF of the preview.
    assert admin_client.get(url, {"statement": "S-000348"}).context["statement"] == older
    assert admin_client.get(url, {"statement": str(older.pk)}).context["statement"] == older
    pdf = admin_client.get(url, {"statement": "S-000348", "format": "pdf"})
    assert pdf["Content-Type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF")
    raw = admin_client.get(url, {"format": "html"})
    assert raw["Content-Type"].startswith("text/html") and "sandbox" in raw["Content-Security-Policy"]
    assert b"PREVIEW" in raw.content

    assert Invoice.objects.count() == 0
    assert AuditRecord.objects.count() == audits


def test_template_preview_shows_the_template_being_previewed(admin_client, template):
    source_example_bill()
    template.header_text = "Consumer header"
    template.save()
    other = InvoiceTemplate.objects.create(
        code="other", name="Other", header_text="Other header", active=False
    )
    response = admin_client.get(reverse("admin:invoicing_invoicetemplate_preview", args=[other.pk]))
    assert response.context["template"] == other


def test_template_preview_errors(admin_client, template, biller_factory):
    url = reverse("admin:invoicing_invoicetemplate_preview", args=[template.pk])
    empty = admin_client.get(url)
    assert empty.status_code == 200
    assert "no bill of this product" in empty.content.decode().lower()
    missing = admin_client.get(url, {"statement": "NOPE"})
    assert missing.status_code == 404
    assert "NOPE" in missing.content.decode()
    assert (
        admin_client.get(reverse("admin:invoicing_invoicetemplate_preview", args=[999999])).status_code == 404
    )
    source_example_bill()
    assert admin_client.get(url, {"format": "docx"}).status_code == 404


def test_template_changes_are_audited(admin_client, template):
    data = {
        "code": "consumer", "name": "Consumer look", "layout": "standard", "account_type": "consumer",
        "active": "on", "accent_color": "#112233", "header_text": "", "footer_text": "", "support_phone": "",
        "extra_css": "",
    }  # fmt: skip
    response = admin_client.post(reverse("admin:invoicing_invoicetemplate_change", args=[template.pk]), data)
    assert response.status_code == 302
    record = AuditRecord.objects.get(action="invoice_template.update")
    assert (record.before["accent_color"], record.after["accent_color"]) == ("#1f4e79", "#112233")
    bad = admin_client.post(
        reverse("admin:invoicing_invoicetemplate_change", args=[template.pk]), {**data, "accent_color": "red"}
    )
    assert bad.status_code == 200 and "accent_color" in bad.context["adminform"].form.errors


# --- settings (one row) -------------------------------------------------------------------------------------


def test_settings_are_a_singleton(admin_client):
    add = reverse("admin:invoicing_invoicingsettings_add")
    response = admin_client.post(
        add,
        {
            "child_line_threshold": 40,
            "usage_event_limit": 100,
            "email_max_attempts": 3,
            "email_retry_minutes": 10,
        },
    )
    assert response.status_code == 302
    row = InvoicingSettings.objects.get()
    assert AuditRecord.objects.filter(action="invoicing_settings.create").exists()
    again = admin_client.get(add)
    assert again.status_code == 302
    assert again["Location"] == reverse("admin:invoicing_invoicingsettings_change", args=[row.pk])
    listing = admin_client.get(reverse("admin:invoicing_invoicingsettings_changelist"))
    assert listing.context["has_add_permission"] is False
    assert f'<a href="{add}" class="addlink">' not in listing.content.decode()
    delete = admin_client.post(
        reverse("admin:invoicing_invoicingsettings_delete", args=[row.pk]), {"post": "yes"}
    )
    assert delete.status_code == 403
    bad = admin_client.post(
        reverse("admin:invoicing_invoicingsettings_change", args=[row.pk]),
        {
            "child_line_threshold": 40,
            "usage_event_limit": 100,
            "email_max_attempts": 0,
            "email_retry_minutes": 10,
        },
    )
    assert "email_max_attempts" in bad.context["adminform"].form.errors
    assert InvoicingSettings.objects.get().email_max_attempts == 3


# --- invoices (read-only) and the preview of any bill -------------------------------------------------------


@pytest.fixture
def invoice(db) -> Invoice:
    statement = source_example_bill()
    invoices_render(statement_ids=[statement.pk])
    return Invoice.objects.get(statement=statement)


def test_invoice_list_search_and_downloads(admin_client, invoice):
    url = reverse("admin:invoicing_invoice_changelist")
    body = admin_client.get(url).content.decode()
    expected = (
        "INV-00000001",
        "S-000348",
        "355.08 USD",
        invoice.account.number,
        "/invoices/INV-00000001.pdf",
        "/invoices/INV-00000001.xml",
        'aria-label="Download invoice INV-00000001 as HTML"',
    )
    for text in expected:
        assert text in body, text
    assert reverse("admin:invoicing_invoice_preview_pick") in body  # the preview form
    assert "INV-00000001" in admin_client.get(url, {"q": invoice.account.number}).content.decode()
    assert "INV-00000001" not in admin_client.get(url, {"q": "INV-0000000"}).content.decode()
    assert "INV-00000001" in admin_client.get(url, {"status": "rendered", "kind": "invoice"}).content.decode()


def test_invoice_is_read_only(admin_client, invoice):
    assert admin_client.get(reverse("admin:invoicing_invoice_add")).status_code == 403
    change = reverse("admin:invoicing_invoice_change", args=[invoice.pk])
    page = admin_client.get(change)
    assert page.status_code == 200
    body = page.content.decode()
    assert 'name="number"' not in body
    assert 'name="_save"' not in body
    assert "ada@example.com" in body  # its deliveries, inline
    assert admin_client.post(change, {"number": "HACKED"}).status_code == 403
    assert (
        admin_client.post(
            reverse("admin:invoicing_invoice_delete", args=[invoice.pk]), {"post": "yes"}
        ).status_code
        == 403
    )
    assert Invoice.objects.get(pk=invoice.pk).number == "INV-00000001"


def test_preview_any_bill_before_it_is_issued(admin_client):
    statement = source_example_bill()
    url = reverse("admin:invoicing_invoice_preview", args=[statement.pk])
    assert url == f"/admin/invoicing/invoice/preview/{statement.pk}/"
    page = admin_client.get(url)
    assert page.status_code == 200
    assert "srcdoc=" in page.content.decode()
    assert "none yet" in page.content.decode()
    pdf = admin_client.get(url, {"format": "pdf"})
    assert pdf.content.startswith(b"%PDF")
    html_doc = admin_client.get(url, {"format": "html"})
    assert b"PREVIEW" in html_doc.content
    template = InvoiceTemplate.objects.create(code="t", name="T")
    assert admin_client.get(url, {"template": template.pk}).context["template"] == template
    assert admin_client.get(url, {"template": "999999"}).status_code == 404
    assert admin_client.get(url, {"template": "x"}).status_code == 404
    assert Invoice.objects.count() == 0


def test_preview_pick_form(admin_client):
    statement = source_example_bill()
    pick = reverse("admin:invoicing_invoice_preview_pick")
    response = admin_client.get(pick, {"statement": "S-000348"})
    assert response["Location"] == reverse("admin:invoicing_invoice_preview", args=[statement.pk])
    assert admin_client.get(pick)["Location"] == reverse(
        "admin:invoicing_invoice_preview", args=[statement.pk]
    )
    missing = admin_client.get(pick, {"statement": "NOPE"}, follow=True)
    assert any("NOPE" in m for m in _messages(missing))


def test_preview_of_an_external_billers_statement_is_not_found(admin_client, biller_factory):
    statement = _statement(account(), number="NW-1", new_charges=Decimal("5.00"), taxes=Decimal(0))
    Statement.objects.filter(pk=statement.pk).update(biller=biller_factory(code="northwind"), channel="api")
    assert (
        admin_client.get(reverse("admin:invoicing_invoice_preview", args=[statement.pk])).status_code == 404
    )
    assert admin_client.get(reverse("admin:invoicing_invoice_preview", args=[999999])).status_code == 404


def test_admin_pages_are_for_staff_with_the_permission(client, csr_user, user_factory):
    statement = source_example_bill()
    url = reverse("admin:invoicing_invoice_preview", args=[statement.pk])
    assert client.get(url)["Location"].startswith(reverse("admin:login"))
    client.force_login(csr_user)  # a CSR has no staff status: the admin login
    assert client.get(url)["Location"].startswith(reverse("admin:login"))
    clerk = user_factory(username="clerk")
    clerk.is_staff = True
    clerk.save()
    client.force_login(clerk)  # staff without invoicing permissions
    assert client.get(url).status_code == 403
    template = InvoiceTemplate.objects.create(code="t", name="T")
    assert (
        client.get(reverse("admin:invoicing_invoicetemplate_preview", args=[template.pk])).status_code == 403
    )


# --- deliveries: Retry now ----------------------------------------------------------------------------------


def test_retry_now_queues_failed_emails_and_reports_refusals(admin_client, invoice):
    failed = InvoiceDelivery.objects.get(invoice=invoice, method="email")
    failed.status, failed.attempts, failed.last_error = "failed", 5, "SMTP 550 mailbox unavailable"
    failed.save()
    sent = InvoiceDelivery.objects.create(invoice=invoice, method="portal", recipient="portal", status="sent")
    from django.utils import timezone

    InvoiceDelivery.objects.filter(pk=sent.pk).update(sent_at=timezone.now())
    url = reverse("admin:invoicing_invoicedelivery_changelist")
    body = admin_client.get(url).content.decode()
    assert "SMTP 550 mailbox unavailable" in body and "Retry now" in body
    response = admin_client.post(
        url, {"action": "retry_now", "_selected_action": [failed.pk, sent.pk]}, follow=True
    )
    notes = _messages(response)
    assert any("1 delivery retried" in m for m in notes), notes
    assert any("already sent" in m for m in notes), notes
    failed.refresh_from_db()
    assert failed.status == "retrying"
    assert AuditRecord.objects.filter(action="invoice_delivery.retry", object_id=str(failed.pk)).exists()


def test_deliveries_are_read_only_and_retry_needs_the_change_permission(client, user_factory, invoice):
    from django.contrib.auth.models import Permission

    from billing_mgmt import roles

    user = user_factory(username="viewer", role=roles.CSR)
    user.is_staff = True
    user.save()
    client.force_login(user)
    url = reverse("admin:invoicing_invoicedelivery_changelist")
    body = client.get(url).content.decode()
    assert "ada@example.com" in body
    assert "Retry now" not in body
    delivery = InvoiceDelivery.objects.get(invoice=invoice)
    assert (
        client.post(reverse("admin:invoicing_invoicedelivery_change", args=[delivery.pk]), {}).status_code
        == 403
    )
    assert Permission.objects.filter(codename="change_invoicedelivery").exists()


# --- print batches ------------------------------------------------------------------------------------------


def test_print_batch_download(admin_client):
    batch = PrintBatch.objects.create(reference="BR-000001", invoice_count=2, page_count=3)
    batch.file.save("print/BR-000001.pdf", ContentFile(b"%PDF-1.7 merged"), save=True)
    body = admin_client.get(reverse("admin:invoicing_printbatch_changelist")).content.decode()
    url = reverse("admin:invoicing_printbatch_download", args=[batch.pk])
    assert url in body
    response = admin_client.get(url)
    assert response["Content-Type"] == "application/pdf"
    assert b"".join(response.streaming_content) == b"%PDF-1.7 merged"
    assert "attachment" in response["Content-Disposition"]
    assert admin_client.get(reverse("admin:invoicing_printbatch_add")).status_code == 403
    empty = PrintBatch.objects.create(reference="BR-000002")
    assert (
        admin_client.get(reverse("admin:invoicing_printbatch_download", args=[empty.pk])).status_code == 404
    )


def test_add_series_refuses_a_prefix_another_series_uses(admin_client):
    from invoicing.services import default_series

    default_series()  # INV-
    response = admin_client.post(
        reverse("admin:invoicing_invoiceseries_add"),
        {"code": "biz", "legal_name": "Biz Ltd", "account_type": "business", "active": "on", "prefix": "INV-",
         "padding": "8"},
    )  # fmt: skip
    assert response.status_code == 200
    assert "already uses this prefix" in str(response.context["adminform"].form.errors["prefix"])
    assert not NumberSeries.objects.filter(code="invoice-biz").exists()
