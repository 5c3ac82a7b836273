"""A supervisor tops up a prepaid wallet from the account page, in a real browser: the Prepaid wallet section,
a refused amount shown at the field, the top-up (htmx on a desktop and a phone, and without JavaScript), and
the balance moving in the section and in the header."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from playwright.sync_api import expect

from statements.models import FinancialTransaction
from tests.billruns.pages import freeze_today
from tests.billruns.test_views_wallet import TODAY, consumed_wallet, estimated_by_run, prepaid_account

pytestmark = pytest.mark.browser


@pytest.fixture
def prepaid(monkeypatch):
    # "Today" is June 10, 2026 for the live server too (it runs in a thread of this process).
    freeze_today(monkeypatch, TODAY)
    account = prepaid_account()
    consumed_wallet(account)  # 45.00 left after ten debits of 1.50
    estimated_by_run(account)  # runs out on July 11
    return account


def _log_in(page, live_server, username: str) -> None:
    page.goto(f"{live_server.url}/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill("pass-Word-123")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Find an account")).to_be_visible()


def _unstick_topbar(page) -> None:
    page.add_style_tag(content=".topbar { position: static !important; }")


def _topups(account) -> list[Decimal]:
    return list(
        FinancialTransaction.objects.filter(account=account, kind="wallet_topup")
        .order_by("id")
        .values_list("amount", flat=True)
    )


def test_supervisor_tops_up_the_wallet(live_server, page, artifacts_dir, supervisor_user, prepaid):
    _log_in(page, live_server, "supervisor")
    page.goto(f"{live_server.url}/accounts/{prepaid.number}/")
    section = page.locator("#section-wallet")
    expect(section.get_by_role("heading", name="Prepaid wallet")).to_be_visible()
    expect(section.locator("[data-wallet-balance] .tile__value")).to_have_text("$45.00")
    expect(section.locator("[data-runs-out] .tile__value")).to_have_text("Jul 11, 2026")
    expect(section.locator("[data-estimate]")).to_contain_text("$0.50 a day, over the last 30 days")
    expect(section.locator("tr[data-wallet-tx]")).to_have_count(10)
    expect(section.get_by_role("table", name=re.compile("latest wallet transactions"))).to_be_visible()
    _unstick_topbar(page)
    section.screenshot(path=str(artifacts_dir / "wallet-section-desktop.png"))

    # A refused amount: the message sits at the field, which keeps the focus; nothing is stored.
    page.evaluate("window.__notReloaded = true")
    amount = section.get_by_label("Amount in USD")
    amount.fill("12.345")
    amount.press("Enter")
    error = section.locator("#wallet-amount-error")
    expect(error).to_have_text("USD amounts have at most 2 decimal places.")
    expect(section.get_by_label("Amount in USD")).to_be_focused()
    expect(section.get_by_label("Amount in USD")).to_have_attribute("aria-invalid", "true")
    assert _topups(prepaid) == [Decimal("60.00")]
    section.locator("[data-wallet-topup]").screenshot(path=str(artifacts_dir / "wallet-topup-error.png"))

    # The top-up, from the keyboard: the section reloads in place with the notice, the new balance and a
    # new estimate; the header's wallet tile follows (the account-changed event).
    amount = section.get_by_label("Amount in USD")
    amount.fill("20.00")
    amount.press("Tab")
    expect(section.get_by_role("button", name="Top up")).to_be_focused()
    page.keyboard.press("Enter")
    notice = section.locator("[data-topup-notice]")
    expect(notice).to_have_text("Added $20.00 to the wallet.")
    expect(notice).to_be_focused()
    assert page.evaluate("window.__notReloaded") is True
    expect(section.locator("[data-wallet-balance] .tile__value")).to_have_text("$65.00")
    expect(section.locator("[data-runs-out] .tile__value")).to_have_text("Aug 1, 2026")
    expect(section.locator("tr[data-wallet-tx]").first).to_contain_text("Wallet top-up")
    expect(section.locator("tr[data-wallet-tx]").first).to_contain_text("by supervisor")
    expect(page.locator("#section-balance")).to_contain_text("$65.00")
    expect(section.get_by_label("Amount in USD")).to_have_value("")
    assert _topups(prepaid) == [Decimal("60.00"), Decimal("20.00")]
    _unstick_topbar(page)
    section.screenshot(path=str(artifacts_dir / "wallet-section-after-topup.png"))
    page.screenshot(path=str(artifacts_dir / "wallet-account-page.png"), full_page=True)


def test_top_up_on_a_phone(live_server, browser, artifacts_dir, supervisor_user, prepaid):
    context = browser.new_context(viewport={"width": 390, "height": 844}, locale="en-US")
    context.set_default_timeout(10_000)
    page = context.new_page()
    try:
        _log_in(page, live_server, "supervisor")
        page.goto(f"{live_server.url}/accounts/{prepaid.number}/")
        section = page.locator("#section-wallet")
        expect(section.locator("[data-wallet-balance] .tile__value")).to_have_text("$45.00")
        # Phones drop the description column; the description moves under the kind.
        expect(section.locator("th", has_text="Description")).to_be_hidden()
        newest = section.locator("tr[data-wallet-tx]").first
        expect(newest.locator(".sm-only")).to_have_text("Prepaid usage 10")
        _unstick_topbar(page)
        section.screenshot(path=str(artifacts_dir / "wallet-section-phone.png"))
        section.get_by_label("Amount in USD").fill("5")
        section.get_by_role("button", name="Top up").click()
        expect(section.locator("[data-topup-notice]")).to_have_text("Added $5.00 to the wallet.")
        expect(section.locator("[data-wallet-balance] .tile__value")).to_have_text("$50.00")
        expect(section.locator("tr[data-wallet-tx]").first.locator(".sm-only")).to_have_text("by supervisor")
        assert _topups(prepaid) == [Decimal("60.00"), Decimal("5.00")]
        section.screenshot(path=str(artifacts_dir / "wallet-section-phone-after-topup.png"))
    finally:
        context.close()


def test_top_up_works_without_javascript(live_server, browser, supervisor_user, prepaid):
    context = browser.new_context(viewport={"width": 1440, "height": 900}, java_script_enabled=False)
    context.set_default_timeout(10_000)
    page = context.new_page()
    try:
        _log_in(page, live_server, "supervisor")
        page.goto(f"{live_server.url}/accounts/{prepaid.number}/")
        # Without JavaScript the lazy section is a link to its own page (billing_mgmt.sections, lazy=).
        page.locator("#section-wallet").get_by_role("link", name="Show prepaid wallet").click()
        section = page.locator("#section-wallet")
        section.get_by_label("Amount in USD").fill("-3")
        section.get_by_role("button", name="Top up").click()
        # A page of its own with the form and its message; nothing stored.
        expect(page.locator("#wallet-amount-error")).to_have_text("The amount must be more than zero.")
        assert _topups(prepaid) == [Decimal("60.00")]
        page.get_by_label("Amount in USD").fill("7.50")
        page.get_by_role("button", name="Top up").click()
        expect(page).to_have_url(re.compile(rf"/accounts/{prepaid.number}/#section-wallet$"))
        section = page.locator("#section-wallet")
        expect(section.locator("[data-topup-notice]")).to_have_text("Added $7.50 to the wallet.")
        expect(section.locator("[data-wallet-balance] .tile__value")).to_have_text("$52.50")
        assert _topups(prepaid) == [Decimal("60.00"), Decimal("7.50")]
    finally:
        context.close()


def test_csr_sees_the_wallet_without_the_form(live_server, page, csr_user, prepaid):
    _log_in(page, live_server, "csr")
    page.goto(f"{live_server.url}/accounts/{prepaid.number}/")
    section = page.locator("#section-wallet")
    expect(section.locator("[data-wallet-balance] .tile__value")).to_have_text("$45.00")
    expect(section.get_by_role("button", name="Top up")).to_have_count(0)
    expect(section.get_by_label("Amount in USD")).to_have_count(0)
