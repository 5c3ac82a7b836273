"""A supervisor bills an account now from its page, in a real browser: the Subscriptions section, the preview
loaded in place, Bill now with its confirmation, the new statement and its Calculation panel."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from billing_mgmt.models import IdempotencyRecord
from billruns.services import bill_create
from invoicing.models import BillMessage
from statements.models import Statement
from tests.billruns import builders as b
from tests.billruns.pages import BILL_DATE, billed_household, freeze_today

pytestmark = pytest.mark.browser
SCREENSHOTS = Path(__file__).resolve().parent.parent.parent / "var" / "screenshots"


@pytest.fixture
def screenshots() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS


@pytest.fixture
def household(monkeypatch):
    # "Today" is June 10, 2026 for the live server too (it runs in a thread of this process).
    freeze_today(monkeypatch)
    BillMessage.objects.create(code="thanks", text="Thank you for your business.", valid_from=BILL_DATE)
    account, _, _ = billed_household()
    return account


def _log_in(page, live_server, username: str) -> None:
    page.goto(f"{live_server.url}/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill("pass-Word-123")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Find an account")).to_be_visible()


def _unstick_topbar(page) -> None:
    page.add_style_tag(content=".topbar { position: static !important; }")


def test_supervisor_previews_bills_now_and_reads_the_calculation(
    live_server, page, screenshots, supervisor_user, household
):
    _log_in(page, live_server, "supervisor")
    page.goto(f"{live_server.url}/accounts/{household.number}/")
    section = page.locator("#section-subscriptions")
    expect(section.get_by_role("heading", name="Subscriptions")).to_be_visible()
    row = section.locator("tr[data-subscription]")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("+15550100100")
    expect(row).to_contain_text("Mobile 30")
    expect(row).to_contain_text("Not billed yet")
    _unstick_topbar(page)
    section.screenshot(path=str(screenshots / "section-subscriptions.png"))

    # The preview loads into the section (htmx): the page does not reload.
    page.evaluate("window.__notReloaded = true")
    section.get_by_role("link", name="Preview next bill").click()
    preview = section.locator("#bill-preview")
    expect(
        preview.get_by_role("heading", name="Next bill preview")
    ).to_be_focused()  # keyboard users land on it
    assert page.evaluate("window.__notReloaded") is True
    expect(preview.locator("[data-preview-total]")).to_have_text("$39.60")
    recurring = preview.locator("tr[data-kind='recurring']")
    expect(recurring).to_contain_text("Monthly fee (in advance, 21 of 30 days)")
    expect(recurring.locator("[data-amount]")).to_have_text("$21.00")
    expect(preview).to_contain_text("Thank you for your business.")
    section.screenshot(path=str(screenshots / "bill-preview.png"))

    # Bill now: the button does nothing until the confirmation is ticked (by keyboard here).
    bill_now = preview.get_by_role("button", name="Bill now")
    bill_now.click()
    expect(page).to_have_url(re.compile(rf"/accounts/{household.number}/$"))
    assert Statement.objects.count() == 0
    confirm = preview.get_by_label("I have checked this preview: create the bill for $39.60 now")
    confirm.focus()
    page.keyboard.press("Space")
    expect(confirm).to_be_checked()
    preview.locator(".bill-now").screenshot(path=str(screenshots / "bill-now-form.png"))
    bill_now.click()

    # Lands on the new statement.
    expect(page).to_have_url(re.compile(rf"/statements/accounts/{household.number}/statements/\d+/$"))
    statement = Statement.objects.get(account=household)
    assert IdempotencyRecord.objects.count() == 1
    expect(page.get_by_role("heading", level=1)).to_have_text(statement.number)
    expect(page.locator("[data-total-due]")).to_have_text("$39.60")

    # "How" on the monthly fee line jumps to its calculation row, opening the Calculation panel.
    panel = page.locator("#panel-calculation")
    expect(panel.get_by_role("heading", name="Calculation")).to_be_visible()
    details = panel.locator("details")
    assert details.evaluate("d => d.open") is False
    line = page.locator("tr.row--line", has_text="Monthly fee (in advance, 21 of 30 days)")
    line.get_by_role("link", name="How this charge was calculated").click()
    target = panel.locator("tr.row--calc:target")
    expect(target).to_be_visible()
    expect(target).to_contain_text("21 of 30 days")
    expect(target.locator("[data-amount]")).to_have_text("$21.00")
    expect(target).to_contain_text("0.7")
    expect(target).to_contain_text("$30.00")
    _unstick_topbar(page)
    page.screenshot(path=str(screenshots / "statement-engine-page.png"), full_page=True)
    panel.screenshot(path=str(screenshots / "statement-calculation.png"))

    # The panel closes and opens again from the keyboard.
    summary = panel.get_by_text("Show how each charge was calculated")
    summary.focus()
    page.keyboard.press("Enter")
    assert details.evaluate("d => d.open") is False
    page.keyboard.press("Enter")
    assert details.evaluate("d => d.open") is True

    # Back on the account page the subscription is billed through the period's end, on that statement.
    page.goto(f"{live_server.url}/accounts/{household.number}/")
    row = page.locator("#section-subscriptions tr[data-subscription]")
    expect(row).to_contain_text("Jun 30, 2026")
    expect(row.get_by_role("link", name=statement.number)).to_be_visible()
    expect(row.locator(".badge--seg-billed")).to_have_text("Billed")


def test_csr_previews_on_a_phone_and_cannot_bill(live_server, browser, screenshots, csr_user, household):
    context = browser.new_context(viewport={"width": 390, "height": 844}, locale="en-US")
    page = context.new_page()
    try:
        _log_in(page, live_server, "csr")
        page.goto(f"{live_server.url}/accounts/{household.number}/")
        section = page.locator("#section-subscriptions")
        section.get_by_role("link", name="Preview next bill").click()
        preview = section.locator("#bill-preview")
        expect(preview.locator("[data-preview-total]")).to_have_text("$39.60")
        expect(preview.get_by_role("button", name="Bill now")).to_have_count(0)
        _unstick_topbar(page)
        section.screenshot(path=str(screenshots / "bill-preview-phone.png"))
    finally:
        context.close()


def test_csr_sees_why_a_subscription_is_not_billed(live_server, page, screenshots, csr_user, household):
    broken = b.plan(name="Roaming Plus")
    b.recurring(broken, "5.00", valid_from=dt.date(2026, 7, 1))  # no price in June
    b.subscription(household, broken, BILL_DATE, identifier="+15550100777")
    bill_create(account=household)
    _log_in(page, live_server, "csr")
    page.goto(f"{live_server.url}/accounts/{household.number}/")
    section = page.locator("#section-subscriptions")
    error_row = section.locator("tr.row--error")
    expect(error_row).to_contain_text("+15550100777")
    expect(error_row.get_by_role("note")).to_contain_text(
        "No price for Monthly fee for monthly billing on 2026-06-10."
    )
    expect(section.locator("tr", has_text="+15550100100").locator(".badge--seg-billed")).to_have_text(
        "Billed"
    )
    section.get_by_role("link", name="Preview next bill").click()
    alert = section.get_by_role("alert")
    expect(alert).to_contain_text("There is nothing to bill: 1 subscription period(s) could not be rated.")
    expect(alert).to_contain_text("No price for Monthly fee")
    _unstick_topbar(page)
    section.screenshot(path=str(screenshots / "section-subscriptions-errors.png"))
