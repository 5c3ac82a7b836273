"""A CSR disputes a statement line from the statement page in a real browser and lands on the case page; a
supervisor finds the case in the queue and approves part of the dispute; the account page shows the case,
the dispute and what is past due. Screenshots at desktop (1440px) and phone (390px) widths."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from django.urls import reverse
from playwright.sync_api import expect

from disputes.models import Case, Dispute
from statements.models import Statement
from tests.disputes.builders import world

pytestmark = pytest.mark.browser

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1440, "height": 900}


def _log_in(page, live_server, username: str) -> None:
    page.goto(f"{live_server.url}/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill("pass-Word-123")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Find an account")).to_be_visible()


def _shots(page, artifacts_dir, name: str) -> None:
    """The page at desktop and at phone width (full length), then back to desktop."""
    page.add_style_tag(content=".topbar { position: static !important; }")
    page.set_viewport_size(DESKTOP)
    page.screenshot(path=str(artifacts_dir / f"{name}-1440.png"), full_page=True)
    page.set_viewport_size(PHONE)
    page.wait_for_timeout(400)  # charts redraw at the new width
    page.screenshot(path=str(artifacts_dir / f"{name}-390.png"), full_page=True)
    page.set_viewport_size(DESKTOP)


def test_a_csr_disputes_a_line_and_a_supervisor_approves_part(live_server, browser, page, artifacts_dir):
    w = world()
    _log_in(page, live_server, "csr1")
    statement_url = reverse("statement-detail", args=[w.account.number, w.statement.pk])
    page.goto(f"{live_server.url}{statement_url}")
    expect(page.get_by_role("heading", name="Disputes")).to_be_visible()
    dispute_links = page.locator('[data-line-action="dispute"]')
    expect(dispute_links).to_have_count(3)

    # The link says which line it is about (to screen readers as well).
    page.get_by_role("link", name=re.compile(r"^Dispute line 2: Roaming")).click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Dispute a charge")
    amount = page.get_by_label("Disputed amount in USD")
    expect(amount).to_have_value("25.00")
    expect(amount).to_be_focused()
    # Above the line's amount: refused at the field, nothing made.
    amount.fill("30.00")
    page.get_by_label("Reason").fill("The customer never left the country in October.")
    page.get_by_role("button", name="Open dispute").click()
    expect(page.locator('[data-field-error="amount"]')).to_have_text("At most the line's amount ($25.00).")
    expect(page.get_by_label("Reason")).to_have_value("The customer never left the country in October.")
    assert not Case.objects.exists()
    page.get_by_label("Disputed amount in USD").fill("25.00")
    _shots(page, artifacts_dir, "case-dispute-form")
    page.get_by_role("button", name="Open dispute").click()

    # The case page.
    case = Case.objects.get()
    expect(page).to_have_url(re.compile(rf"/cases/{case.number}/$"))
    expect(page.locator("[data-case-notice]")).to_contain_text(
        f"Dispute of $25.00 opened as case {case.number}"
    )
    expect(page.locator("[data-case-status]")).to_have_text("Status: New")
    expect(page.locator("[data-dispute-amount]")).to_have_text("$25.00")
    expect(page.locator("[data-resolve-form]")).to_have_count(0)  # CSRs do not decide disputes
    page.locator("#history").get_by_role("textbox", name="Comment").fill(
        "Asked the roaming partner for records."
    )
    page.get_by_label("Internal note (the customer does not see it)").check()
    page.get_by_role("button", name="Add comment").click()
    expect(page.locator("[data-case-notice]")).to_have_text("Internal note added.")
    expect(page.locator("[data-event][data-internal]")).to_have_count(1)
    _shots(page, artifacts_dir, "case-page-csr")

    # Back on the statement: the line is marked, its badge leads to the case.
    page.goto(f"{live_server.url}{statement_url}")
    expect(page.locator('[data-line-action="dispute"]')).to_have_count(2)
    expect(page.locator('[data-line-action="disputed"]')).to_have_attribute("href", f"/cases/{case.number}/")
    expect(page.locator("[data-statement-disputes]")).to_contain_text(case.number)
    _shots(page, artifacts_dir, "case-statement-page")

    # The supervisor, in a browser of their own: the queue, the case, part of the dispute approved.
    context = browser.new_context(viewport=DESKTOP, locale="en-US")
    context.set_default_timeout(10_000)
    boss = context.new_page()
    try:
        _log_in(boss, live_server, "sup1")
        boss.goto(f"{live_server.url}{reverse('case-queue')}")
        expect(boss.get_by_role("heading", name=re.compile("Case queue"))).to_be_visible()
        row = boss.locator(f'tr[data-case="{case.number}"]')
        expect(row).to_contain_text("Alice Example")
        expect(row).to_contain_text("Dispute a charge")
        _shots(boss, artifacts_dir, "case-queue")
        row.get_by_role("link", name=case.number).click()
        form = boss.locator("[data-resolve-form]")
        expect(form).to_be_visible()
        form.get_by_label("Approve part of it").check()
        form.get_by_label("Amount to credit in USD").fill("15.00")
        form.get_by_label("Note (optional)").fill("Roaming was used on two of the five days.")
        _shots(boss, artifacts_dir, "case-page-supervisor")
        form.get_by_role("button", name="Record decision").click()
        expect(boss.locator("[data-case-notice]")).to_have_text(
            f"Approved in part: $15.00 credited to the account. Case {case.number} is resolved."
        )
        expect(boss.locator("[data-case-status]")).to_have_text("Status: Resolved")
        expect(boss.locator("[data-dispute-credited]")).to_have_text("$15.00")
        expect(boss.locator("[data-resolve-form]")).to_have_count(0)
        expect(boss.locator('[data-transition="closed"]')).to_be_visible()
        _shots(boss, artifacts_dir, "case-page-resolved")
    finally:
        context.close()
    dispute = Dispute.objects.get()
    assert (dispute.status, dispute.approved_amount) == ("partially_approved", Decimal("15.00"))
    assert Statement.objects.get(pk=w.statement.pk).disputed_amount == 0

    # The CSR's account page: the case and the dispute in their sections.
    page.goto(f"{live_server.url}{reverse('account-detail', args=[w.account.number])}")
    cases = page.locator("#section-cases")
    expect(cases.locator(f'tr[data-case="{case.number}"] [data-case-status]')).to_have_text("Resolved")
    disputes = page.locator("#section-disputes")
    expect(disputes.locator("[data-dispute-status]")).to_have_text("Approved in part")
    expect(page.locator("#section-past-due")).to_contain_text("Past due")
    _shots(page, artifacts_dir, "case-account-page")


def test_a_csr_opens_a_case_from_the_account_page(live_server, page, artifacts_dir):
    w = world()
    _log_in(page, live_server, "csr1")
    page.goto(f"{live_server.url}{reverse('account-detail', args=[w.account.number])}")
    page.locator("#section-cases").get_by_role("link", name="New case").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("New case")
    expect(page.get_by_label("Request type")).to_be_focused()
    page.get_by_label("Request type").select_option(label="Extend invoice due date")
    page.get_by_label("Subject").fill("Two more weeks to pay")
    page.get_by_label("Description (optional)").fill("Salary comes on the 10th.")
    page.get_by_role("button", name="Open case").click()
    expect(page.locator('[data-field-error="statement"]')).to_have_text("Choose the statement this is about.")
    expect(page.get_by_label("Subject")).to_have_value("Two more weeks to pay")
    page.get_by_label("Statement (optional)").select_option(index=1)
    page.get_by_label("New due date (optional)").fill("2026-12-10")
    _shots(page, artifacts_dir, "case-new-form")
    page.get_by_role("button", name="Open case").click()
    case = Case.objects.get()
    expect(page).to_have_url(re.compile(rf"/cases/{case.number}/$"))
    expect(page.locator("[data-decision-note]")).to_contain_text(
        "A supervisor approves (resolves) or rejects"
    )
    expect(page.locator('[data-transition="resolved"]')).to_have_count(0)
    page.get_by_role("button", name=re.compile("^Take it")).click()
    expect(page.locator("[data-case-owner]")).to_have_text("Casey Rep")
