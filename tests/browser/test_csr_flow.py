"""A CSR logs in, finds an account by name and reads its page, in a real browser."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from accounts.models import Account, Contact
from statements.models import FinancialTransaction
from statements.services import transaction_post

pytestmark = pytest.mark.browser


@pytest.fixture
def borealis(account_factory, contact_factory, biller_reference_factory, biller_factory):
    holding = account_factory(name="Borealis Holdings", type=Account.Type.BILLING_AGGREGATOR)
    telecom = account_factory(name="Borealis Telecom", type=Account.Type.BUSINESS, parent=holding)
    account_factory(name="Borealis Telecom Store 4", parent=telecom, is_paying=False)
    account_factory(name="Borealis Logistics", parent=holding, status=Account.Status.SUSPENDED)
    contact_factory(
        account=telecom, name="Nora Lindqvist", email="nora@borealis.test", phone="+4670123456",
        role=Contact.Role.PRIMARY,
    )  # fmt: skip
    contact_factory(account=telecom, name="Accounts Payable", email="ap@borealis.test", phone="")
    telco = biller_factory(code="northwind", name="Northwind Billing")
    biller_reference_factory(account=telecom, biller=telco, external_ref="NW-204881")
    transaction_post(
        account=telecom, kind=FinancialTransaction.Kind.BILL, amount="1250.50", currency="USD",
        description="Bill for March", biller=telco, external_id="INV-3301",
    )  # fmt: skip
    transaction_post(
        account=telecom, kind=FinancialTransaction.Kind.PAYMENT, amount="-250.00", currency="USD",
        description="Card payment, Visa ending 4242",
    )  # fmt: skip
    return telecom


def test_csr_logs_in_searches_and_opens_an_account(live_server, page, artifacts_dir, csr_user, borealis):
    page.goto(f"{live_server.url}/")
    expect(page).to_have_url(re.compile(r"/login/\?next=/$"))
    page.get_by_label("Username").fill("csr")
    page.get_by_label("Password").fill("pass-Word-123")
    page.get_by_role("button", name="Log in").click()

    expect(page.get_by_role("heading", name="Find an account")).to_be_visible()
    expect(page.get_by_role("banner")).to_contain_text("CSR")

    # Live search (HTMX): results appear without submitting the form.
    page.get_by_role("searchbox", name="Search accounts").press_sequentially("Borealis Tele", delay=20)
    results = page.locator("#search-results table")
    expect(results).to_be_visible()
    expect(page.locator("#search-results")).to_contain_text("2 accounts found")
    expect(results.locator("tbody tr")).to_have_count(2)
    expect(page).to_have_url(re.compile(r"/search/\?q=Borealis(\+|%20)Tele$"))
    page.screenshot(path=str(artifacts_dir / "csr-search-results.png"), full_page=True)

    page.get_by_role("link", name="Borealis Telecom", exact=True).click()

    expect(page).to_have_url(re.compile(rf"/accounts/{borealis.number}/$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Borealis Telecom")
    header = page.locator("#account-header")
    expect(header).to_contain_text(borealis.number)
    expect(header).to_contain_text("Business")
    expect(header).to_contain_text("Active")
    expect(header.locator("[data-balance=owed] .tile__value")).to_have_text("$1,000.50")
    expect(header.get_by_role("link", name=re.compile("Borealis Telecom Store 4"))).to_be_visible()
    hierarchy = page.get_by_role("navigation", name="Account hierarchy")
    expect(hierarchy.get_by_role("link", name="Borealis Holdings")).to_be_visible()

    expect(page.get_by_role("heading", name="Billing profile")).to_be_visible()
    expect(page.locator("#section-profile")).to_contain_text("USD")
    contacts = page.locator("#section-contacts")
    expect(contacts).to_contain_text("Nora Lindqvist")
    expect(contacts).to_contain_text("nora@borealis.test")
    expect(page.locator("#section-references")).to_contain_text("NW-204881")
    ledger = page.locator("#section-ledger")
    expect(ledger).to_contain_text("Bill for March")
    expect(ledger).to_contain_text("-$250.00")
    page.screenshot(path=str(artifacts_dir / "csr-account-page.png"), full_page=True)

    # A section refreshes in place through its own URL.
    transaction_post(
        account=borealis, kind="adjustment", amount="-0.50", currency="USD", description="Goodwill"
    )
    with page.expect_response(re.compile(r"/sections/ledger/$")):
        page.get_by_role("link", name="Refresh ledger").click()
    expect(ledger).to_contain_text("Goodwill")
    expect(page.get_by_role("heading", level=1)).to_have_text("Borealis Telecom")

    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
