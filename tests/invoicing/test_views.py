"""CSR pages of invoices: the account page's Invoices section, the statement page's Invoice panel, and the
downloads of an invoice's stored documents (/invoices/<number>.pdf|.html|.xml)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group, Permission
from django.test import RequestFactory
from django.urls import reverse

from billing_mgmt import roles
from invoicing import selectors
from invoicing.models import Invoice, InvoiceDelivery
from invoicing.services import invoices_issue, invoices_render
from invoicing.views import invoices_section
from statements.models import Statement
from tests.pages import whole_page

from .builders import _statement, account, source_example_bill

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


def _rendered(statement: Statement) -> Invoice:
    result = invoices_render(statement_ids=[statement.pk], actor="test")
    assert result.rendered == [statement.pk], result
    return Invoice.objects.get(statement=statement)


def _bills(acct, count: int) -> list[Statement]:
    bills = []
    for i in range(count):
        bill = _statement(acct, number=f"S-{i + 1:06d}", new_charges=Decimal("10.00") + i, taxes=Decimal(0))
        Statement.objects.filter(pk=bill.pk).update(statement_date=dt.date(2026, 1, 1) + dt.timedelta(days=i))
        bills.append(bill)
    return bills


def _without_invoice_permission() -> None:
    """CSRs lose the permission (this test only: the transaction rolls back)."""
    Group.objects.get(name=roles.CSR).permissions.remove(
        Permission.objects.get(content_type__app_label="invoicing", codename="view_invoice")
    )


@pytest.fixture
def invoice(db) -> Invoice:
    return _rendered(source_example_bill())


# --- the Invoices section --------------------------------------------------------------------------------


def test_account_page_lists_invoices_with_downloads(csr_client, invoice):
    # Invoices is a lazy section: the page as a browser shows it (tests/pages.py).
    body = whole_page(csr_client, reverse("account-detail", args=[invoice.account.number]))
    assert 'id="section-invoices"' in body
    # After the Statements section.
    assert body.index('id="section-statements"') < body.index('id="section-invoices"')
    assert invoice.number == "INV-00000001"
    for ext, label in (("pdf", "PDF"), ("html", "HTML"), ("xml", "XML")):
        url = reverse("invoice-download", args=[invoice.number, ext])
        assert url == f"/invoices/INV-00000001.{ext}"
        assert f'href="{url}"' in body
        assert f'<span class="visually-hidden">Download invoice INV-00000001 as </span>{label}</a>' in body
    assert "$355.08" in body
    assert "E-mail to ada@example.com pending" in body
    bill_url = reverse("statement-detail", args=[invoice.account.number, invoice.statement_id])
    assert f'href="{bill_url}"' in body
    assert "S-000348" in body
    assert '<th scope="col">Invoice</th>' in body


def test_section_says_how_each_copy_went(csr_client, invoice):
    InvoiceDelivery.objects.filter(invoice=invoice).update(status="sent")
    InvoiceDelivery.objects.create(invoice=invoice, method="print", recipient="Ada, London")
    InvoiceDelivery.objects.create(
        invoice=invoice, method="portal", recipient="portal", status="sent", contact=None
    )
    body = csr_client.get(
        reverse("account-section", args=[invoice.account.number, "invoices"]), **HTMX
    ).content.decode()
    assert "<html" not in body
    assert "E-mailed to ada@example.com" in body
    assert "Print batch pending" in body
    assert "Customer portal" in body


def test_section_marks_credit_notes_and_invoices_not_rendered_yet(csr_client):
    acct = account()
    [original, correction] = _bills(acct, 2)
    Statement.objects.filter(pk=correction.pk).update(corrects=original)
    invoices_issue(statement_ids=[original.pk, correction.pk])
    body = csr_client.get(reverse("account-section", args=[acct.number, "invoices"]), **HTMX).content.decode()
    credit = Invoice.objects.get(statement=correction)
    assert credit.kind == Invoice.Kind.CREDIT_NOTE
    assert "Credit note" in body and f'for <span class="mono">{credit.corrects.number}</span>' in body
    # Issued, not rendered: no download links yet.
    assert "Being rendered" in body
    assert "/invoices/" not in body
    assert "Not yet" in body


def test_section_empty_state(csr_client):
    acct = account()
    body = csr_client.get(reverse("account-section", args=[acct.number, "invoices"]), **HTMX).content.decode()
    assert "No invoices yet." in body
    assert "<table" not in body


def test_section_is_hidden_without_the_permission(csr_client, invoice):
    _without_invoice_permission()
    body = csr_client.get(reverse("account-detail", args=[invoice.account.number])).content.decode()
    assert 'id="section-invoices"' not in body
    assert "/invoices/" not in body
    response = csr_client.get(reverse("account-section", args=[invoice.account.number, "invoices"]), **HTMX)
    assert response.status_code == 404


@pytest.mark.parametrize("count", [1, 10])
def test_section_queries_do_not_grow_with_invoices(count, csr_user, django_assert_max_num_queries):
    acct = account()
    bills = _bills(acct, count)
    invoices_render(statement_ids=[b.pk for b in bills])
    request = RequestFactory().get("/")
    request.user = csr_user
    with django_assert_max_num_queries(2):  # the invoices with their bills, their deliveries
        html = invoices_section(request, acct)
    assert html.count("<tr data-invoice=") == count
    assert html.count("as </span>PDF</a>") == count
    # Newest first.
    numbers = [i.number for i in selectors.account_invoices(account=acct)]
    assert numbers == sorted(numbers, reverse=True)


def test_account_invoices_limit_and_statement_invoice(invoice):
    assert selectors.account_invoices(account=invoice.account, limit=0) == []
    assert selectors.statement_invoice(statement=invoice.statement_id) == invoice
    other = _statement(invoice.account, number="S-OTHER", new_charges=Decimal(1), taxes=Decimal(0))
    assert selectors.statement_invoice(statement=other) is None


# --- the statement page's Invoice panel ---------------------------------------------------------------------


def _statement_page(client, statement: Statement) -> str:
    response = client.get(reverse("statement-detail", args=[statement.account.number, statement.pk]))
    assert response.status_code == 200
    return response.content.decode()


def test_statement_page_links_its_invoice(csr_client, invoice):
    body = _statement_page(csr_client, invoice.statement)
    assert 'id="panel-invoice"' in body
    assert '<dd class="mono">INV-00000001</dd>' in body
    assert 'href="/invoices/INV-00000001.pdf"' in body
    assert "Download invoice INV-00000001 as </span>XML" in body


def test_statement_page_says_the_bill_has_no_invoice_yet(csr_client):
    body = _statement_page(csr_client, source_example_bill())
    assert 'id="panel-invoice"' in body
    assert "No invoice yet." in body


def external_bill(biller_factory) -> Statement:
    """A statement an external biller sent (it invoices it itself)."""
    statement = _statement(account(), number="NW-1", new_charges=Decimal("5.00"), taxes=Decimal(0))
    Statement.objects.filter(pk=statement.pk).update(biller=biller_factory(code="northwind"), channel="api")
    return Statement.objects.get(pk=statement.pk)


def test_statement_page_of_an_external_biller_has_no_invoice_panel(csr_client, biller_factory):
    statement = external_bill(biller_factory)
    body = _statement_page(csr_client, statement)
    assert 'id="panel-invoice"' not in body


def test_statement_panel_hidden_without_the_permission(csr_client, invoice):
    _without_invoice_permission()
    body = _statement_page(csr_client, invoice.statement)
    assert 'id="panel-invoice"' not in body


# --- downloads ----------------------------------------------------------------------------------------------


def test_downloads_serve_the_stored_files(csr_client, invoice):
    pdf = csr_client.get("/invoices/INV-00000001.pdf")
    assert pdf.status_code == 200
    assert pdf["Content-Type"] == "application/pdf"
    assert pdf["Content-Disposition"] == 'attachment; filename="INV-00000001.pdf"'
    body = b"".join(pdf.streaming_content)
    assert body.startswith(b"%PDF")
    invoice.pdf.open("rb")
    with invoice.pdf as stored:
        assert body == stored.read()

    inline = csr_client.get("/invoices/INV-00000001.pdf?inline=1")
    assert inline["Content-Disposition"] == 'inline; filename="INV-00000001.pdf"'

    xml = csr_client.get("/invoices/INV-00000001.xml")
    assert xml["Content-Type"] == "application/xml"
    assert xml["Content-Disposition"].startswith("attachment;")
    assert b"urn:billing-mgmt:invoice:1.0" in b"".join(xml.streaming_content)

    html = csr_client.get("/invoices/INV-00000001.html")
    assert html["Content-Type"] == "text/html; charset=utf-8"
    assert html["Content-Disposition"].startswith("inline;")
    csp = html["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "sandbox" in csp and "script-src" not in csp
    assert html["X-Content-Type-Options"] == "nosniff"
    assert b"INV-00000001" in b"".join(html.streaming_content)


def test_downloaded_file_does_not_change_when_the_template_does(csr_client, invoice):
    from invoicing.models import InvoiceTemplate

    before = b"".join(csr_client.get("/invoices/INV-00000001.html").streaming_content)
    InvoiceTemplate.objects.create(code="new", name="New look", header_text="Brand new header")
    after = b"".join(csr_client.get("/invoices/INV-00000001.html").streaming_content)
    assert before == after


@pytest.mark.parametrize(
    ("role", "status"),
    [
        (None, 302),  # anonymous: to the login page
        (roles.CUSTOMER, 403),
        (roles.CSR, 200),
        (roles.SUPERVISOR, 200),
        (roles.BILLING_ADMIN, 200),
    ],
)
def test_download_permissions(client, user_factory, invoice, role, status):
    if role is not None:
        client.force_login(user_factory(username=f"u-{role}".replace(" ", "-"), role=role))
    response = client.get("/invoices/INV-00000001.pdf")
    assert response.status_code == status
    if role is None:
        assert response["Location"].startswith(reverse("login"))


def test_download_refused_to_staff_without_the_permission(csr_client, invoice):
    _without_invoice_permission()
    assert csr_client.get("/invoices/INV-00000001.pdf").status_code == 403


def test_download_not_found(csr_client, invoice):
    assert csr_client.get("/invoices/INV-99999999.pdf").status_code == 404
    assert csr_client.get("/invoices/INV-00000001.doc").status_code == 404
    assert csr_client.get("/invoices/INV-00000001").status_code == 404


def test_download_of_an_invoice_not_rendered_yet_is_not_found(csr_client):
    statement = source_example_bill()
    [issued] = invoices_issue(statement_ids=[statement.pk])
    assert issued.status == Invoice.Status.ISSUED
    for ext in ("pdf", "html", "xml"):
        assert csr_client.get(f"/invoices/{issued.number}.{ext}").status_code == 404


def test_download_of_a_file_missing_from_storage_is_not_found(csr_client, invoice):
    invoice.pdf.storage.delete(invoice.pdf.name)
    assert csr_client.get("/invoices/INV-00000001.pdf").status_code == 404


def test_download_is_get_only(csr_client, invoice):
    assert csr_client.post("/invoices/INV-00000001.pdf").status_code == 405
