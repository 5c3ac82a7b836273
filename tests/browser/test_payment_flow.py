"""A CSR takes a payment and makes an adjustment above their limit on the account page, in a real browser; a
supervisor approves it from the queue; both entries show on the account page with their statuses and the new
balance. Keyboard and screen-reader details along the way (labels, focus on the notice, table headers)."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group
from playwright.sync_api import expect

from billing_mgmt import roles
from payments.models import Adjustment, AdjustmentLimit, AdjustmentReason, Payment
from tests.factories import AccountFactory
from tests.payments.test_services import bill

pytestmark = pytest.mark.browser


@pytest.fixture
def owing(csr_user, supervisor_user):
    account = AccountFactory(name="Rivera Household")
    bill(account, "S-1001", "100.00")  # owes $100.00
    AdjustmentLimit.objects.create(
        role=Group.objects.get(name=roles.CSR), currency="USD", max_amount=Decimal("25.00")
    )
    AdjustmentReason.objects.create(code="goodwill", name="Goodwill credit", direction="credit")
    AdjustmentReason.objects.create(code="late-fee", name="Late fee", direction="debit")
    return account


def _log_in(page, live_server, username: str) -> None:
    page.goto(f"{live_server.url}/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill("pass-Word-123")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Find an account")).to_be_visible()


def _unstick_topbar(page) -> None:
    page.add_style_tag(content=".topbar { position: static !important; }")


def test_payment_and_adjustment_approved_by_a_supervisor(live_server, browser, page, artifacts_dir, owing):
    _log_in(page, live_server, "csr")
    page.goto(f"{live_server.url}/accounts/{owing.number}/")
    section = page.locator("#section-payments")
    expect(section.get_by_role("heading", name="Payments & adjustments")).to_be_visible()
    expect(page.locator("#section-balance")).to_contain_text("$100.00")
    expect(section.locator("[data-pending-link]")).to_have_count(0)  # CSRs have no queue
    page.evaluate("window.__notReloaded = true")

    # A refused amount first: the message sits at the field, nothing is posted.
    section.get_by_role("link", name="New payment").click()
    amount = section.get_by_label("Amount in USD")
    expect(amount).to_be_focused()
    amount.fill("40.005")
    section.get_by_role("button", name="Post payment").click()
    expect(section.locator('[data-field-error="amount"]')).to_have_text(
        "USD amounts have at most 2 decimal places."
    )
    expect(section.get_by_label("Amount in USD")).to_have_attribute("aria-invalid", "true")
    assert Payment.objects.count() == 0

    # The payment, from the keyboard.
    section.get_by_label("Amount in USD").fill("40.00")
    section.get_by_label("Reference (optional)").fill("CHQ-2231")
    expect(section.get_by_label("Settle first (optional)")).to_contain_text("S-1001")
    _unstick_topbar(page)
    section.screenshot(path=str(artifacts_dir / "payments-new-payment-form.png"))
    section.get_by_label("Reference (optional)").press("Enter")
    notice = section.locator("[data-payments-notice]")
    expect(notice).to_have_text("Payment of $40.00 posted.")
    expect(notice).to_be_focused()
    expect(page.locator("#section-balance")).to_contain_text("$60.00")
    assert page.evaluate("window.__notReloaded") is True
    assert Payment.objects.get().reference == "CHQ-2231"

    # An adjustment above the CSR's $25.00 limit waits for a supervisor.
    section.get_by_role("link", name="New adjustment").click()
    expect(section.locator("[data-adjustment-limit]")).to_have_text(
        "Up to $25.00 posts at once; above it waits for a supervisor."
    )
    section.get_by_role("radio", name=re.compile("^Credit")).check()
    section.get_by_label("Amount in USD").fill("30.00")
    section.get_by_label("Reason").select_option(label="Goodwill credit (credits only)")
    section.get_by_label("Note (optional)").fill("Outage in October")
    section.screenshot(path=str(artifacts_dir / "payments-new-adjustment-form.png"))
    section.get_by_role("button", name="Make adjustment").click()
    expect(section.locator("[data-payments-notice]")).to_have_text(
        "Credit adjustment of $30.00 is waiting for a supervisor’s approval: it posts once approved."
    )
    expect(page.locator("#section-balance")).to_contain_text("$60.00")  # not posted yet
    rows = section.locator("tr[data-entry]")
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_contain_text("Credit adjustment")
    expect(rows.nth(0).locator("[data-entry-status]")).to_have_text("Pending approval")
    expect(rows.nth(1).locator("[data-entry-status]")).to_have_text("Posted")
    expect(section.get_by_role("columnheader", name="Status")).to_be_visible()
    section.screenshot(path=str(artifacts_dir / "payments-section-csr.png"))
    assert Adjustment.objects.get().status == "pending"

    # The supervisor, in a browser of their own: the queue, then the approval.
    context = browser.new_context(viewport={"width": 1440, "height": 900}, locale="en-US")
    context.set_default_timeout(10_000)
    boss = context.new_page()
    try:
        _log_in(boss, live_server, "supervisor")
        boss.goto(f"{live_server.url}/accounts/{owing.number}/")
        link = boss.locator("#section-payments [data-pending-link]")
        expect(link).to_contain_text("1 adjustment awaiting approval")
        link.click()
        expect(boss.get_by_role("heading", name=re.compile("Adjustments awaiting approval"))).to_be_visible()
        row = boss.locator("tr[data-pending]")
        expect(row).to_have_count(1)
        expect(row).to_contain_text("Goodwill credit")
        expect(row).to_contain_text("-$30.00")
        expect(row).to_contain_text("csr")
        _unstick_topbar(boss)
        boss.screenshot(path=str(artifacts_dir / "payments-queue.png"), full_page=True)
        row.get_by_label("Approval comment (optional)").fill("Confirmed outage")
        row.get_by_role("button", name=re.compile("^Approve")).click()
        expect(boss.locator("[data-queue-notice]")).to_contain_text(
            "Credit adjustment of $30.00 on Rivera Household"
        )
        expect(boss.locator("[data-queue-empty]")).to_be_visible()
        boss.locator("[data-queue-notice]").get_by_role("link", name="Open the account").click()
        expect(boss.locator("#section-balance")).to_contain_text("$30.00")
        rows = boss.locator("#section-payments tr[data-entry]")
        expect(rows.nth(0).locator("[data-entry-status]")).to_have_text("Posted")
        expect(rows.nth(0)).to_contain_text("Approved by supervisor: “Confirmed outage”")
        expect(rows.nth(1).locator("[data-entry-status]")).to_have_text("Posted")
    finally:
        context.close()

    # Back on the CSR's page: the section and the balance follow after a reload.
    page.reload()
    section = page.locator("#section-payments")
    expect(page.locator("#section-balance")).to_contain_text("$30.00")
    rows = section.locator("tr[data-entry]")
    expect(rows.nth(0)).to_contain_text("Credit adjustment")
    expect(rows.nth(0)).to_contain_text("-$30.00")
    expect(rows.nth(0).locator("[data-entry-status]")).to_have_text("Posted")
    expect(rows.nth(1)).to_contain_text("Payment")
    expect(rows.nth(1)).to_contain_text("CHQ-2231")
    _unstick_topbar(page)
    section.screenshot(path=str(artifacts_dir / "payments-section-after-approval.png"))
    page.screenshot(path=str(artifacts_dir / "payments-account-page.png"), full_page=True)
    assert Adjustment.objects.get().status == "posted"


def test_payment_without_javascript(live_server, browser, csr_user, owing):
    context = browser.new_context(viewport={"width": 1440, "height": 900}, java_script_enabled=False)
    context.set_default_timeout(10_000)
    page = context.new_page()
    try:
        _log_in(page, live_server, "csr")
        page.goto(f"{live_server.url}/accounts/{owing.number}/")
        # Without JavaScript the lazy section is a link to its own page (billing_mgmt.sections, lazy=).
        page.locator("#section-payments").get_by_role("link", name="Show payments & adjustments").click()
        page.locator("#section-payments").get_by_role("link", name="New payment").click()
        expect(page.get_by_role("heading", level=1)).to_contain_text("Payments & adjustments")
        page.get_by_label("Amount in USD").fill("0")
        page.get_by_role("button", name="Post payment").click()
        expect(page.locator('[data-field-error="amount"]')).to_have_text("The amount must be more than zero.")
        page.get_by_label("Amount in USD").fill("15.00")
        page.get_by_role("button", name="Post payment").click()
        expect(page).to_have_url(re.compile(rf"/accounts/{owing.number}/#section-payments$"))
        expect(page.locator("[data-payments-notice]")).to_have_text("Payment of $15.00 posted.")
        expect(page.locator("#section-balance")).to_contain_text("$85.00")
    finally:
        context.close()


def test_add_a_card_in_the_payment_methods_section(live_server, page, artifacts_dir, csr_user, owing):
    _log_in(page, live_server, "csr")
    page.goto(f"{live_server.url}/accounts/{owing.number}/")
    section = page.locator("#section-payment-methods")
    section.get_by_role("link", name="Add card").click()
    expect(section.locator("[data-card-notice]")).to_contain_text("never here")
    section.get_by_label("Processor token").fill("tok_1PQxyz")
    section.get_by_label("Brand").fill("Visa")
    section.get_by_label("Last four digits").fill("4242")
    section.get_by_label("Expiry month").select_option(label="08")
    section.get_by_label("Expiry year").select_option(index=3)
    section.get_by_label("Name on the card (optional)").fill("Ana Rivera")
    _unstick_topbar(page)
    section.screenshot(path=str(artifacts_dir / "payments-add-card.png"))
    section.get_by_role("button", name="Add").click()
    expect(section.locator("[data-methods-notice]")).to_have_text(
        "Visa •••• 4242 added as the default method."
    )
    expect(section.locator("[data-default]")).to_have_text("Default")
    section.screenshot(path=str(artifacts_dir / "payments-methods.png"))
