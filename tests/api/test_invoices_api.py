"""Invoicing API: list, detail, document downloads and issuing one bill's invoice; filters, bad input,
permissions of every role (biller API clients and customers never), and a fixed query count on the list."""

from __future__ import annotations

import datetime as dt
import io
from decimal import Decimal
from unittest import mock

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from lxml import etree
from pypdf import PdfReader
from rest_framework.test import APIClient

from billing_mgmt import roles
from invoicing.models import Invoice, InvoiceDelivery
from invoicing.services import invoices_issue, invoices_render
from statements.models import Statement
from tests.factories import BillerFactory
from tests.invoicing import builders
from tests.invoicing.builders import source_example_bill

pytestmark = pytest.mark.django_db
LIST_URL = "/api/v1/invoices/"


def issue_url(statement_id) -> str:
    return f"/api/v1/statements/{statement_id}/invoice/"


@pytest.fixture
def staff(session_client):
    """API clients logged in as each staff role."""
    return {role: session_client(role) for role in (roles.CSR, roles.SUPERVISOR, roles.BILLING_ADMIN)}


@pytest.fixture
def rendered() -> Invoice:
    statement = source_example_bill()
    result = invoices_render(statement_ids=[statement.pk], actor="test")
    assert result.rendered == [statement.pk], result
    return Invoice.objects.get(statement=statement)


def external_statement() -> Statement:
    statement = builders._statement(
        builders.account(name="Bea External", email="bea@example.com"),
        number="EXT-1",
        new_charges=Decimal("10.00"),
        taxes=Decimal("0"),
    )
    statement.biller = BillerFactory(code="utility-co")
    statement.save(update_fields=["biller"])
    return statement


def extra_invoices(count: int, *, on: dt.date | None = None) -> list[Invoice]:
    """``count`` more issued invoices, dated ``on`` (as if issued that day: issued invoices never change)."""
    statements = [
        builders._statement(
            builders.account(name=f"Extra {i}", email=f"extra{i}@example.com"),
            number=f"S-X{i:03d}",
            new_charges=Decimal("5.00"),
            taxes=Decimal("0"),
        )
        for i in range(count)
    ]
    if on is None:
        return invoices_issue(statement_ids=[s.pk for s in statements])
    with mock.patch("invoicing.services.issuing.timezone.localdate", return_value=on):
        return invoices_issue(statement_ids=[s.pk for s in statements])


# List and detail -------------------------------------------------------------------------------------------


def test_list_shows_invoices_newest_first_with_links(staff, rendered):
    [older] = extra_invoices(1, on=dt.date(2026, 1, 5))

    response = staff[roles.CSR].get(LIST_URL)

    assert response.status_code == 200, response.content
    data = response.json()
    assert data["count"] == 2
    first, second = data["results"]
    assert (first["number"], second["number"]) == (rendered.number, older.number)
    assert first["kind"] == "invoice" and first["status"] == "rendered" and first["format"] == "detailed"
    assert first["total_due"] == "355.0800" and first["currency"] == "USD"
    assert first["account"] == rendered.account.number
    assert (first["statement_id"], first["statement_number"]) == (rendered.statement_id, "S-000348")
    assert first["corrects"] is None and first["series"] == "main"
    assert first["documents"]["pdf"] == f"http://testserver/api/v1/invoices/{rendered.number}/pdf"
    assert first["documents"]["xml"].endswith(f"/api/v1/invoices/{rendered.number}/xml")
    # Issued but not rendered yet: no links.
    assert second["status"] == "issued" and second["documents"] == {"pdf": None, "html": None, "xml": None}


def test_list_filters(staff, rendered):
    [other] = extra_invoices(1, on=dt.date(2026, 1, 5))
    client = staff[roles.CSR]

    def numbers(**params):
        response = client.get(LIST_URL, params)
        assert response.status_code == 200, response.content
        return [row["number"] for row in response.json()["results"]]

    assert numbers(account=rendered.account.number) == [rendered.number]
    assert numbers(statement="S-X000") == [other.number]
    assert numbers(status="issued") == [other.number]
    assert numbers(status="rendered") == [rendered.number]
    assert numbers(kind="credit_note") == []
    assert numbers(invoice_date_to="2026-01-31") == [other.number]
    assert numbers(invoice_date_from="2026-02-01") == [rendered.number]
    assert numbers(invoice_date_from="2026-01-01", invoice_date_to="2026-01-05") == [other.number]
    assert numbers(account="NOPE") == []
    assert numbers(ordering="invoice_date") == [other.number, rendered.number]


@pytest.mark.parametrize(
    "params", [{"kind": "receipt"}, {"status": "lost"}, {"invoice_date_from": "2026-13-45"}]
)
def test_list_bad_filter_is_a_400_with_the_field(staff, params):
    response = staff[roles.CSR].get(LIST_URL, params)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid" and list(error["fields"]) == list(params)


def test_list_is_a_fixed_number_of_queries(staff, rendered):
    client = staff[roles.CSR]
    client.get(LIST_URL)  # warm up: session and permission caches

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get(LIST_URL).status_code == 200
        return len(captured)

    few = queries()
    extra_invoices(6)
    assert queries() == few
    assert few <= 6


def test_detail_has_the_deliveries(staff, rendered):
    delivery = InvoiceDelivery.objects.get(invoice=rendered)
    assert delivery.method == "email"

    response = staff[roles.SUPERVISOR].get(f"{LIST_URL}{rendered.number}/")

    assert response.status_code == 200, response.content
    data = response.json()
    assert data["number"] == rendered.number and data["page_count"] >= 1
    assert data["pdf_sha256"] == rendered.pdf_sha256 and len(data["xml_sha256"]) == 64
    assert data["issued_by"] == "test"
    [row] = data["deliveries"]
    assert row["method"] == "email" and row["recipient"] == "ada@example.com"
    assert row["status"] == delivery.status and row["attempts"] == delivery.attempts
    assert "sent_at" in row and "next_attempt_at" in row


def test_unknown_invoice_number_is_a_404_in_the_error_shape(staff):
    for path in ("", "pdf", "html", "xml"):
        response = staff[roles.CSR].get(f"{LIST_URL}INV-NOPE/{path}")
        assert response.status_code == 404, path
        assert response.json()["error"]["code"] == "not_found"


# Downloads -------------------------------------------------------------------------------------------------


def _body(response) -> bytes:
    return b"".join(response.streaming_content)


def test_downloads_are_the_stored_files(staff, rendered):
    client = staff[roles.CSR]

    pdf = client.get(f"{LIST_URL}{rendered.number}/pdf", HTTP_ACCEPT="application/pdf")
    assert pdf.status_code == 200
    assert pdf["Content-Type"] == "application/pdf"
    assert pdf["Content-Disposition"] == f'attachment; filename="{rendered.number}.pdf"'
    assert pdf["ETag"] == f'"{rendered.pdf_sha256}"'
    content = _body(pdf)
    assert content.startswith(b"%PDF")
    text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(content)).pages)
    assert rendered.number in text

    html = client.get(f"{LIST_URL}{rendered.number}/html")
    assert html.status_code == 200 and html["Content-Type"] == "text/html; charset=utf-8"
    assert html["Content-Disposition"] == f'attachment; filename="{rendered.number}.html"'
    with rendered.html.open("rb") as stored:
        assert _body(html) == stored.read()

    xml = client.get(f"{LIST_URL}{rendered.number}/xml", HTTP_ACCEPT="text/xml")
    assert xml.status_code == 200 and xml["Content-Type"] == "application/xml"
    assert xml["Content-Disposition"] == f'attachment; filename="{rendered.number}.xml"'
    root = etree.fromstring(_body(xml))
    ns = {"i": "urn:billing-mgmt:invoice:1.0"}
    assert root.findtext("i:Header/i:Number", namespaces=ns) == rendered.number
    assert root.findtext("i:Amounts/i:TotalDue", namespaces=ns) == "355.08"


def test_download_before_rendering_is_a_404_not_rendered(staff):
    [invoice] = extra_invoices(1)
    for extension in ("pdf", "html", "xml"):
        response = staff[roles.CSR].get(f"{LIST_URL}{invoice.number}/{extension}")
        assert response.status_code == 404
        error = response.json()["error"]
        assert error["code"] == "not_rendered" and invoice.number in error["message"]


# Issuing one bill's invoice --------------------------------------------------------------------------------


def test_billing_admin_issues_and_renders_a_bill_once(staff):
    statement = source_example_bill()
    client = staff[roles.BILLING_ADMIN]

    first = client.post(issue_url(statement.pk))

    assert first.status_code == 201, first.content
    data = first.json()
    assert data["outcome"] == "issued"
    invoice = Invoice.objects.get(statement=statement)
    assert invoice.status == Invoice.Status.RENDERED and invoice.pdf and invoice.xml
    assert data["invoice"]["number"] == invoice.number and data["invoice"]["status"] == "rendered"
    assert data["invoice"]["issued_by"] == "user-billing-admin"
    assert data["invoice"]["documents"]["pdf"].endswith(f"/invoices/{invoice.number}/pdf")
    assert data["invoice"]["deliveries"][0]["recipient"] == "ada@example.com"

    second = client.post(issue_url(statement.pk))

    assert second.status_code == 200
    assert second.json()["outcome"] == "existing"
    assert second.json()["invoice"]["number"] == invoice.number
    assert Invoice.objects.count() == 1
    assert Invoice.objects.get().pdf_sha256 == invoice.pdf_sha256  # not rendered again


def test_issuing_a_credit_note_for_a_corrective_bill(staff, rendered):
    original = rendered.statement
    credit = builders._statement(
        original.account,
        number="S-000349",
        new_charges=Decimal("-300.00"),
        taxes=Decimal("0"),
        corrects=original,
    )
    builders._line(credit, 1, "adjustment", "-300.00", description="Monthly fee refunded")

    response = staff[roles.BILLING_ADMIN].post(issue_url(credit.pk))

    assert response.status_code == 201, response.content
    data = response.json()["invoice"]
    assert (data["kind"], data["corrects"]) == ("credit_note", rendered.number)
    listed = staff[roles.CSR].get(LIST_URL, {"kind": "credit_note"}).json()["results"]
    assert [row["number"] for row in listed] == [data["number"]]


def test_an_earlier_failed_rendering_is_rendered_by_the_next_call(staff, monkeypatch):
    from invoicing.services import rendering

    statement = source_example_bill()
    client = staff[roles.BILLING_ADMIN]
    real = rendering.render_document

    def broken(document):
        raise RuntimeError("template exploded")

    monkeypatch.setattr(rendering, "render_document", broken)
    failed = client.post(issue_url(statement.pk))
    assert failed.status_code == 503 and failed["Retry-After"] == "60"
    error = failed.json()["error"]
    invoice = Invoice.objects.get(statement=statement)
    assert error["code"] == "render_failed" and invoice.number in error["message"]
    assert invoice.status == Invoice.Status.FAILED  # the number is kept

    monkeypatch.setattr(rendering, "render_document", real)
    again = client.post(issue_url(statement.pk))
    assert again.status_code == 200 and again.json()["outcome"] == "existing"
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.RENDERED and again.json()["invoice"]["number"] == invoice.number


def test_issuing_bad_input(staff):
    client = staff[roles.BILLING_ADMIN]

    missing = client.post(issue_url(999999))
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"

    external = external_statement()
    response = client.post(issue_url(external.pk))
    assert response.status_code == 404
    error = response.json()["error"]
    assert error["code"] == "not_invoiced_here" and "utility-co" in error["message"]

    for bad in ("abc", "-1", "0", "1e3", "99999999999999999999"):
        response = client.post(issue_url(bad))
        assert response.status_code == 400, bad
        assert response.json()["error"]["fields"].keys() == {"statement_id"}
    assert not Invoice.objects.exists()


# Permissions -----------------------------------------------------------------------------------------------


def _all_calls(client: APIClient, invoice: Invoice, statement_id: int) -> dict[str, int]:
    return {
        "list": client.get(LIST_URL).status_code,
        "detail": client.get(f"{LIST_URL}{invoice.number}/").status_code,
        "pdf": client.get(f"{LIST_URL}{invoice.number}/pdf").status_code,
        "html": client.get(f"{LIST_URL}{invoice.number}/html").status_code,
        "xml": client.get(f"{LIST_URL}{invoice.number}/xml").status_code,
        "issue": client.post(issue_url(statement_id)).status_code,
    }


def test_staff_read_and_supervisors_and_billing_admins_issue(staff, rendered):
    statement = builders._statement(
        rendered.account, number="S-NEXT", new_charges=Decimal("1.00"), taxes=Decimal("0")
    )
    calls = _all_calls(staff[roles.CSR], rendered, statement.pk)
    assert calls == {"list": 200, "detail": 200, "pdf": 200, "html": 200, "xml": 200, "issue": 403}
    # Supervisors bill now, so they may also issue that bill's invoice at once.
    assert _all_calls(staff[roles.SUPERVISOR], rendered, statement.pk)["issue"] == 201
    assert _all_calls(staff[roles.BILLING_ADMIN], rendered, statement.pk)["issue"] == 200  # already issued
    assert Invoice.objects.filter(statement=statement).count() == 1


@pytest.mark.parametrize("role", [roles.CUSTOMER, None])
def test_customers_and_users_without_a_role_get_403(session_client, rendered, role):
    calls = _all_calls(session_client(role), rendered, rendered.statement_id)
    assert set(calls.values()) == {403}, calls


def test_biller_api_clients_get_403_everywhere(biller_client, rendered):
    biller = BillerFactory(code="some-biller")
    client = biller_client(biller)
    assert client.get("/api/v1/statements/").status_code == 200  # the key works elsewhere
    calls = _all_calls(client, rendered, rendered.statement_id)
    assert set(calls.values()) == {403}, calls
    response = client.get(LIST_URL)
    assert "biller API clients" in response.json()["error"]["message"]


def test_anonymous_callers_get_401(rendered):
    calls = _all_calls(APIClient(), rendered, rendered.statement_id)
    assert set(calls.values()) == {401}, calls


def test_deliveries_need_their_own_permission(user_factory, rendered):
    from django.contrib.auth.models import Permission

    user = user_factory(username="reader")
    user.user_permissions.add(
        Permission.objects.get(codename="view_invoice", content_type__app_label="invoicing")
    )
    client = APIClient()
    client.force_login(user)
    response = client.get(f"{LIST_URL}{rendered.number}/")
    assert response.status_code == 200 and response.json()["deliveries"] is None
