"""A customer uses the self-service portal in a real browser: logs in at /portal/login/, opens a statement,
disputes a charge (a refused amount first), gets a tracking number and finds the case in the Cases tab; then
the same on a phone. Screenshots at 390x844 (phone) and 1440x900 (desktop) go to tests/artifacts/."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal

import pytest
from playwright.sync_api import expect

from disputes.models import Case, Dispute
from disputes.services import case_comment, case_open, case_transition
from invoicing.services import invoices_render
from statements.models import FinancialTransaction, Statement
from statements.services import transaction_post
from tests.disputes.builders import billed_statement, world

pytestmark = pytest.mark.browser

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1440, "height": 900}


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"


@pytest.fixture
def customer_world(transactional_db):
    w = world()
    w.customer.first_name, w.customer.last_name = "Alice", "Example"
    w.customer.save(update_fields=["first_name", "last_name"])
    # An older bill, paid, and an inquiry that customer service answered.
    older = billed_statement(w.account, "INV-A-0", [("Mobile plan", "40.00")])
    Statement.objects.filter(pk=older.pk).update(
        status=Statement.Status.PAID, statement_date=dt.date(2026, 10, 1), due_date=dt.date(2026, 10, 15),
        period_start=dt.date(2026, 9, 1), period_end=dt.date(2026, 9, 30),
    )  # fmt: skip
    transaction_post(
        account=w.account, kind=FinancialTransaction.Kind.PAYMENT, amount="-40.00", currency="USD",
        description="Card payment",
    )  # fmt: skip
    inquiry, _ = case_open(
        account=w.account, process=w.processes["billing-inquiry"], subject="Why did my plan price change?",
        description="My plan went up in October.", channel="portal", actor=w.customer,
    )  # fmt: skip
    case_transition(case=inquiry, to_status="in_progress", actor=w.csr)
    case_comment(
        case=inquiry, actor=w.csr, text="The yearly price review raised plans by $2.00 from October."
    )
    case_transition(case=inquiry, to_status="resolved", actor=w.csr, resolution="Explained the price review.")
    result = invoices_render(statement_ids=[w.statement.pk], actor="test")
    assert result.rendered == [w.statement.pk], result
    return w


def _context(browser, viewport):
    context = browser.new_context(viewport=viewport, locale="en-US")
    context.set_default_timeout(10_000)
    return context, context.new_page()


def _log_in(page, live_server) -> None:
    page.goto(f"{live_server.url}/portal/")
    expect(page).to_have_url(re.compile(r"/portal/login/\?next=/portal/$"))
    expect(page.get_by_role("heading", name="Log in to your account")).to_be_visible()
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill("pass-Word-123")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Hello, Alice")).to_be_visible()


def _shot(page, artifacts_dir, name: str) -> None:
    """The whole page. On a phone also the first screen as the person sees it, and the whole page with the
    fixed tab bar drawn at the end of it (a full-page capture would otherwise paint it mid-page)."""
    if not name.endswith("-phone"):
        page.screenshot(path=str(artifacts_dir / f"portal-{name}.png"), full_page=True)
        return
    page.screenshot(path=str(artifacts_dir / f"portal-{name}.png"))
    style = page.add_style_tag(
        content="body { position: relative; } .topbar { position: static !important; } "
        ".tabs { position: absolute !important; }"
    )
    page.screenshot(path=str(artifacts_dir / f"portal-{name}-full.png"), full_page=True)
    style.evaluate("element => element.remove()")


def test_customer_disputes_a_charge_and_follows_the_case(live_server, browser, artifacts_dir, customer_world):
    w = customer_world
    context, page = _context(browser, DESKTOP)
    try:
        page.goto(f"{live_server.url}/portal/login/")
        _shot(page, artifacts_dir, "login-desktop")
        _log_in(page, live_server)
        # From the keyboard: the first Tab reaches the skip link, which moves the focus to the page itself.
        page.keyboard.press("Tab")
        skip = page.get_by_role("link", name="Skip to main content")
        expect(skip).to_be_focused()
        page.keyboard.press("Enter")
        expect(page.locator("#main")).to_be_focused()
        summary = page.locator("[data-summary]")
        expect(summary.locator("[data-balance]")).to_have_text("$75.00")
        expect(summary.locator("[data-next-due]")).to_have_text("Nov 15, 2026")
        expect(page.locator("[data-open-cases]")).to_have_text("0 open")
        nav = page.get_by_role("navigation", name="Main")
        expect(nav.get_by_role("link", name="Home")).to_have_attribute("aria-current", "page")
        _shot(page, artifacts_dir, "home-desktop")

        # The statement, from the Statements tab.
        nav.get_by_role("link", name="Statements").click()
        expect(page.get_by_role("heading", name="Statements", exact=True)).to_be_visible()
        rows = page.locator("[data-statement]")
        expect(rows).to_have_count(2)
        expect(rows.nth(0)).to_contain_text("INV-A-1")
        _shot(page, artifacts_dir, "statements-desktop")
        rows.nth(0).get_by_role("link", name=re.compile("Statement INV-A-1")).click()
        expect(page.get_by_role("heading", name="INV-A-1")).to_be_visible()
        expect(
            page.locator("[data-downloads]").get_by_role("link", name=re.compile("Download PDF"))
        ).to_be_visible()
        lines = page.locator("tr[data-line]")
        expect(lines).to_have_count(3)
        expect(page.locator("[data-dispute-link]")).to_have_count(3)
        _shot(page, artifacts_dir, "statement-desktop")

        # Dispute the roaming charge: more than the line first (refused at the field), then 20.00 of it.
        roaming = lines.filter(has_text="Roaming")
        roaming.get_by_role("link", name=re.compile("Dispute this charge")).click()
        expect(page.get_by_role("heading", name="Dispute a charge")).to_be_visible()
        amount = page.get_by_label("Amount you dispute (USD)")
        expect(amount).to_have_value("25.00")
        amount.fill("30.00")
        page.get_by_label("What is wrong with this charge?").fill("I was not abroad in October.")
        page.get_by_role("button", name="Send dispute").click()
        expect(page.locator('[data-field-error="amount"]')).to_contain_text(
            "At most the line's amount ($25.00)."
        )
        expect(page.get_by_label("Amount you dispute (USD)")).to_have_attribute("aria-invalid", "true")
        expect(page.get_by_label("What is wrong with this charge?")).to_have_value(
            "I was not abroad in October."
        )
        assert Dispute.objects.count() == 0
        _shot(page, artifacts_dir, "dispute-refused-desktop")
        page.get_by_label("Amount you dispute (USD)").fill("20.00")
        page.get_by_role("button", name="Send dispute").click()

        confirmation = page.locator("[data-confirmation]")
        expect(confirmation).to_contain_text("Thank you, we’ve got your request")
        dispute = Dispute.objects.select_related("case").get()
        assert dispute.amount == Decimal("20.00") and dispute.case.channel == "portal"
        expect(confirmation.locator("[data-tracking-number]")).to_have_text(dispute.case.number)
        expect(confirmation).to_contain_text("We e-mailed you a confirmation at alice@example.com")
        expect(page.locator("[data-case-status]").first).to_have_text("Status: New")
        _shot(page, artifacts_dir, "case-created-desktop")

        # The case in the Cases tab, open ones first; the statement line now says "Disputed".
        nav.get_by_role("link", name="Cases").click()
        cases = page.locator("[data-case]")
        expect(cases).to_have_count(2)
        expect(cases.nth(0)).to_contain_text(dispute.case.number)
        expect(cases.nth(0).locator("[data-case-status]")).to_have_text("Status: New")
        expect(cases.nth(1).locator("[data-case-status]")).to_have_text("Status: Resolved")
        _shot(page, artifacts_dir, "cases-desktop")
        page.go_back()
        page.go_back()
        page.goto(f"{live_server.url}/portal/statements/{w.statement.pk}/")
        expect(
            page.locator("tr[data-line]").filter(has_text="Roaming").locator("[data-disputed]")
        ).to_contain_text("Disputed · $20.00")
        nav.get_by_role("link", name="Help Center").click()
        expect(page.locator("[data-process]")).to_have_count(5)
        _shot(page, artifacts_dir, "help-desktop")
        page.locator("[data-process='extend-due-date']").get_by_role(
            "link", name=re.compile("Request")
        ).click()
        _shot(page, artifacts_dir, "request-desktop")
        page.goto(
            f"{live_server.url}/portal/cases/{Case.objects.exclude(dispute__isnull=False).get().number}/"
        )
        _shot(page, artifacts_dir, "case-resolved-desktop")
    finally:
        context.close()


def test_the_portal_on_a_phone(live_server, browser, artifacts_dir, customer_world):
    w = customer_world
    context, page = _context(browser, PHONE)
    try:
        page.goto(f"{live_server.url}/portal/login/")
        _shot(page, artifacts_dir, "login-phone")
        _log_in(page, live_server)
        nav = page.get_by_role("navigation", name="Main")
        # The tabs are a bar at the bottom of the screen, each a comfortable touch target.
        box = nav.bounding_box()
        assert box["y"] + box["height"] == pytest.approx(PHONE["height"], abs=2)
        for name in ("Home", "Statements", "Help Center", "Cases"):
            link = nav.get_by_role("link", name=name)
            expect(link).to_be_visible()
            size = link.bounding_box()
            assert size["height"] >= 44 and size["width"] >= 44, (name, size)
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        _shot(page, artifacts_dir, "home-phone")

        nav.get_by_role("link", name="Statements").click()
        _shot(page, artifacts_dir, "statements-phone")
        page.locator("[data-statement='INV-A-1']").get_by_role(
            "link", name=re.compile("Statement INV-A-1")
        ).click()
        expect(page.get_by_role("heading", name="INV-A-1")).to_be_visible()
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        _shot(page, artifacts_dir, "statement-phone")
        link = (
            page.locator("tr[data-line]")
            .filter(has_text="Device")
            .get_by_role("link", name=re.compile("Dispute"))
        )
        assert link.bounding_box()["height"] >= 44
        link.click()
        page.get_by_label("What is wrong with this charge?").fill("I returned the device in September.")
        _shot(page, artifacts_dir, "dispute-phone")
        page.get_by_role("button", name="Send dispute").click()
        expect(page.locator("[data-confirmation]")).to_be_visible()
        _shot(page, artifacts_dir, "case-created-phone")
        nav.get_by_role("link", name="Cases").click()
        expect(page.locator("[data-case]")).to_have_count(2)
        _shot(page, artifacts_dir, "cases-phone")
        nav.get_by_role("link", name="Help Center").click()
        _shot(page, artifacts_dir, "help-phone")
        assert Dispute.objects.get().statement_line == w.line(3)
    finally:
        context.close()


def test_staff_and_missing_pages(live_server, browser, artifacts_dir, customer_world):
    """A CSR who opens the portal gets a polite page that points to the CSR app; a customer who changes an id
    in a URL gets the portal's own "not found" page."""
    context, page = _context(browser, DESKTOP)
    try:
        page.goto(f"{live_server.url}/login/")
        page.get_by_label("Username").fill("csr1")
        page.get_by_label("Password").fill("pass-Word-123")
        page.get_by_role("button", name="Log in").click()
        expect(page.get_by_role("heading", name="Find an account")).to_be_visible()
        response = page.goto(f"{live_server.url}/portal/")
        assert response.status == 403
        expect(page.get_by_role("heading", name="This portal is for customers")).to_be_visible()
        _shot(page, artifacts_dir, "staff-desktop")
        page.get_by_role("link", name="Go to customer service").click()
        expect(page.get_by_role("heading", name="Find an account")).to_be_visible()
    finally:
        context.close()
    context, page = _context(browser, PHONE)
    try:
        _log_in(page, live_server)
        response = page.goto(f"{live_server.url}/portal/statements/{customer_world.other_statement.pk}/")
        assert response.status == 404
        expect(page.get_by_role("heading", name="We couldn’t find that page")).to_be_visible()
        _shot(page, artifacts_dir, "not-found-phone")
    finally:
        context.close()
