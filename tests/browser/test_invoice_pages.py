"""A CSR downloads an account's invoices and follows a bill to its invoice; a billing admin previews a
bill's invoice in admin. In a real browser (Playwright + Debian's Chromium)."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from invoicing.models import Invoice
from invoicing.services import invoices_render
from tests.invoicing.builders import source_example_bill

pytestmark = pytest.mark.browser


def _log_in(page, live_server, username: str, *, admin: bool = False) -> None:
    page.goto(f"{live_server.url}{'/admin/login/' if admin else '/login/'}")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill("pass-Word-123")
    page.get_by_role("button", name="Log in").click()


@pytest.fixture
def invoice(db) -> Invoice:
    statement = source_example_bill(name="Ada Lovelace")
    invoices_render(statement_ids=[statement.pk], actor="test")
    return Invoice.objects.get(statement=statement)


def test_csr_downloads_invoices_and_follows_a_bill_to_its_invoice(
    live_server, page, artifacts_dir, csr_user, invoice
):
    _log_in(page, live_server, "csr")
    expect(page.get_by_role("heading", name="Find an account")).to_be_visible()
    page.goto(f"{live_server.url}/accounts/{invoice.account.number}/")

    section = page.locator("#section-invoices")
    expect(section.get_by_role("heading", name="Invoices")).to_be_visible()
    row = section.get_by_role("row").filter(has_text=invoice.number)
    expect(row).to_contain_text("$355.08")
    expect(row).to_contain_text("S-000348")
    expect(row).to_contain_text("E-mail to ada@example.com pending")
    for label in ("PDF", "HTML", "XML"):
        expect(
            section.get_by_role("link", name=f"Download invoice {invoice.number} as {label}")
        ).to_be_visible()
    page.add_style_tag(content=".topbar { position: static !important; }")
    section.scroll_into_view_if_needed()
    section.screenshot(path=str(artifacts_dir / "invoices-section.png"))

    # The PDF through the page, as the CSR clicks it.
    with page.expect_download() as info:
        section.get_by_role("link", name=f"Download invoice {invoice.number} as PDF").click()
    download = info.value
    assert download.suggested_filename == f"{invoice.number}.pdf"
    with open(download.path(), "rb") as pdf:
        assert pdf.read(4) == b"%PDF"

    # The keyboard reaches the download links (real links, in order).
    section.get_by_role("link", name="S-000348").focus()
    focused = []
    for _ in range(3):
        page.keyboard.press("Tab")
        focused.append(page.evaluate("document.activeElement.textContent").strip())
    assert focused == [f"Download invoice {invoice.number} as {label}" for label in ("PDF", "HTML", "XML")]

    # The HTML opens in the browser under its own restrictive policy.
    response = page.request.get(f"{live_server.url}/invoices/{invoice.number}.html")
    assert response.ok and "default-src 'none'" in response.headers["content-security-policy"]

    # The bill's page links its invoice.
    section.get_by_role("link", name="S-000348").click()
    panel = page.locator("#panel-invoice")
    expect(panel.get_by_role("heading", name="Invoice")).to_be_visible()
    expect(panel).to_contain_text(invoice.number)
    expect(panel.get_by_role("link", name=f"Download invoice {invoice.number} as XML")).to_have_attribute(
        "href", f"/invoices/{invoice.number}.xml"
    )
    page.add_style_tag(content=".topbar { position: static !important; }")
    panel.scroll_into_view_if_needed()
    panel.screenshot(path=str(artifacts_dir / "statement-invoice-panel.png"))


def test_billing_admin_previews_an_invoice(live_server, page, artifacts_dir, billing_admin_user):
    statement = source_example_bill(name="Grace Hopper")
    _log_in(page, live_server, "billing-admin", admin=True)
    page.goto(f"{live_server.url}/admin/invoicing/invoice/")
    page.get_by_label("Preview the invoice of bill").fill("S-000348")
    page.get_by_role("button", name="Preview invoice").click()
    expect(page).to_have_url(f"{live_server.url}/admin/invoicing/invoice/preview/{statement.pk}/")
    frame = page.frame_locator("iframe[title='Invoice preview of bill S-000348']")
    expect(frame.locator("body")).to_contain_text("PREVIEW")
    expect(frame.locator("body")).to_contain_text(statement.account.number)
    expect(page.get_by_role("link", name="Open the PDF preview of bill S-000348")).to_be_visible()
    page.screenshot(path=str(artifacts_dir / "admin-invoice-preview.png"), full_page=False)
    pdf = page.request.get(f"{live_server.url}/admin/invoicing/invoice/preview/{statement.pk}/?format=pdf")
    assert pdf.body()[:4] == b"%PDF"
    assert Invoice.objects.count() == 0
