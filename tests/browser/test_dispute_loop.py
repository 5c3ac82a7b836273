"""The whole dispute loop in a real browser, each step photographed at a phone and a desktop width:
the customer disputes a line in the portal, the CSR sees the case on the account page, a supervisor approves
part of it from the queue, and the customer sees the case resolved with the credit and the new balance."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from django.core import mail
from playwright.sync_api import expect

from disputes.models import Dispute
from payments.models import Adjustment
from statements.models import AccountBalance
from tests.disputes.builders import world

pytestmark = pytest.mark.browser

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1440, "height": 900}
PASSWORD = "pass-Word-123"


@pytest.fixture(autouse=True)
def _mail(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    mail.outbox = []


def _shots(page, artifacts_dir, step: str) -> None:
    """The step at both widths (whole page), then back to the width the person uses."""
    size = page.viewport_size
    for name, viewport in (("phone", PHONE), ("desktop", DESKTOP)):
        page.set_viewport_size(viewport)
        page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=str(artifacts_dir / f"loop-{step}-{name}.png"), full_page=True)
    page.set_viewport_size(size)


def _person(browser, viewport):
    context = browser.new_context(viewport=viewport, locale="en-US")
    context.set_default_timeout(10_000)
    return context, context.new_page()


def _staff_log_in(page, live_server, username: str) -> None:
    page.goto(f"{live_server.url}/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Find an account")).to_be_visible()


def test_customer_disputes_csr_sees_supervisor_approves_part_customer_sees_the_outcome(
    live_server, browser, artifacts_dir, transactional_db, eager
):
    w = world()
    w.customer.first_name = "Alice"
    w.customer.save(update_fields=["first_name"])
    customer_ctx, customer = _person(browser, PHONE)
    csr_ctx, csr = _person(browser, DESKTOP)
    boss_ctx, boss = _person(browser, DESKTOP)
    try:
        # 1. The customer, on a phone, disputes the roaming charge of their statement.
        customer.goto(f"{live_server.url}/portal/login/")
        customer.get_by_label("Username").fill("alice")
        customer.get_by_label("Password").fill(PASSWORD)
        customer.get_by_role("button", name="Log in").click()
        expect(customer.locator("[data-balance]")).to_have_text("$75.00")
        _shots(customer, artifacts_dir, "1-customer-home")
        customer.goto(f"{live_server.url}/portal/statements/{w.statement.pk}/")
        roaming = customer.locator("tr[data-line]").filter(has_text="Roaming")
        roaming.get_by_role("link", name=re.compile("Dispute this charge")).click()
        expect(customer.get_by_label("Amount you dispute (USD)")).to_have_value("25.00")
        customer.get_by_label("What is wrong with this charge?").fill("I was not abroad in October.")
        _shots(customer, artifacts_dir, "2-customer-dispute-form")
        customer.get_by_role("button", name="Send dispute").click()
        confirmation = customer.locator("[data-confirmation]")
        expect(confirmation).to_be_visible()
        dispute = Dispute.objects.select_related("case").get()
        number = dispute.case.number
        expect(confirmation.locator("[data-tracking-number]")).to_have_text(number)
        assert [m.to for m in mail.outbox] == [["alice@example.com"]] and number in mail.outbox[0].subject
        _shots(customer, artifacts_dir, "3-customer-case-created")

        # 2. The CSR finds the case and the disputed amount on the account page.
        _staff_log_in(csr, live_server, "csr1")
        csr.goto(f"{live_server.url}/accounts/{w.account.number}/")
        cases = csr.locator("#section-cases")
        expect(cases.locator(f'tr[data-case="{number}"]')).to_contain_text("New")
        expect(csr.locator("#section-disputes")).to_contain_text("$25.00")
        expect(csr.locator("#section-past-due")).to_contain_text("$25.00")  # held out of past due
        _shots(csr, artifacts_dir, "4-csr-account-page")
        cases.get_by_role("link", name=number).click()
        expect(csr.locator("[data-case-status]")).to_have_text("Status: New")
        expect(csr.locator("[data-resolve-form]")).to_have_count(0)  # a CSR does not decide it
        _shots(csr, artifacts_dir, "5-csr-case-page")

        # 3. A supervisor approves 15.00 of the 25.00 from the queue.
        _staff_log_in(boss, live_server, "sup1")
        boss.goto(f"{live_server.url}/cases/queue/")
        boss.locator(f'tr[data-case="{number}"]').get_by_role("link", name=number).click()
        form = boss.locator("[data-resolve-form]")
        form.get_by_label("Approve part of it").check()
        form.get_by_label("Amount to credit in USD").fill("15.00")
        form.get_by_label("Note (optional)").fill("Roaming was used on two of the five days.")
        _shots(boss, artifacts_dir, "6-supervisor-decides")
        form.get_by_role("button", name="Record decision").click()
        expect(boss.locator("[data-case-status]")).to_have_text("Status: Resolved")
        expect(boss.locator("[data-dispute-credited]")).to_have_text("$15.00")
        _shots(boss, artifacts_dir, "7-supervisor-resolved")
        credit = Adjustment.objects.get()
        assert (credit.amount, credit.direction, credit.checker, credit.maker) == (
            Decimal("15.00"), "credit", w.supervisor, w.customer,
        )  # fmt: skip
        balance = AccountBalance.objects.get(account=w.account, balance_type="receivable").amount
        assert balance == Decimal("60.00")
        assert len(mail.outbox) == 2 and "resolved" in mail.outbox[1].subject

        # 4. The customer sees the case resolved, the credit and the new balance.
        customer.goto(f"{live_server.url}/portal/cases/{number}/")
        expect(customer.locator("[data-case-status]").first).to_have_text("Status: Resolved")
        expect(customer.locator("main")).to_contain_text("$15.00")
        expect(customer.locator("main")).not_to_contain_text("Roaming partner")  # internal notes never shown
        _shots(customer, artifacts_dir, "8-customer-case-resolved")
        customer.goto(f"{live_server.url}/portal/")
        expect(customer.locator("[data-balance]")).to_have_text("$60.00")
        _shots(customer, artifacts_dir, "9-customer-new-balance")
    finally:
        for context in (customer_ctx, csr_ctx, boss_ctx):
            context.close()
