"""A CSR reads an account's statements, balances and charts, and opens a statement, in a real browser."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from pathlib import Path

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from statements.models import FinancialTransaction, Statement
from statements.services import balance_snapshot_record, transaction_post
from tests.statements.history import two_biller_history

pytestmark = pytest.mark.browser

ALL_CHARTS_DRAWN = (
    "() => [...document.querySelectorAll('canvas[data-chart]')].every(c => window.Chart && Chart.getChart(c))"
)
SCREENSHOTS = Path(__file__).resolve().parent.parent.parent / "var" / "screenshots"


@pytest.fixture
def screenshots() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS


@pytest.fixture
def household(account_factory, biller_factory, biller_reference_factory):
    account = account_factory(name="Harper Household")
    northwind = biller_factory(code="northwind", name="Northwind Mobile")
    citypower = biller_factory(code="citypower", name="City Power & Light")
    biller_reference_factory(account=account, biller=northwind, external_ref="NW-1")
    biller_reference_factory(account=account, biller=citypower, external_ref="CP-1")
    two_biller_history(northwind=northwind, citypower=citypower, months=24)
    now = timezone.now()
    # Northwind agrees with the ledger; City Power also counts a late fee the ledger never received.
    for biller, extra in ((northwind, Decimal(0)), (citypower, Decimal("12.40"))):
        ledger = sum(
            FinancialTransaction.objects.filter(account=account, biller=biller).values_list(
                "amount", flat=True
            ),
            Decimal(0),
        )
        balance_snapshot_record(
            biller=biller, account=account, as_of=now, amount=ledger + extra, currency="USD"
        )
    transaction_post(
        account=account, kind=FinancialTransaction.Kind.PAYMENT, amount="-20.00", currency="USD",
        description="Card payment by phone",
    )  # fmt: skip
    return account


def _log_in(page, live_server):
    page.goto(f"{live_server.url}/login/")
    page.get_by_label("Username").fill("csr")
    page.get_by_label("Password").fill("pass-Word-123")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Find an account")).to_be_visible()


def _unstick_topbar(page) -> None:
    """Screenshots of a long page: the sticky top bar would be painted over the sections it scrolls past."""
    page.add_style_tag(content=".topbar { position: static !important; }")


def _charts_drawn(page) -> list[str]:
    """The type of the Chart.js chart drawn on every chart canvas (empty string where none was drawn)."""
    return page.evaluate(
        """() => [...document.querySelectorAll('canvas[data-chart]')].map(
            c => (window.Chart && Chart.getChart(c)) ? Chart.getChart(c).config.type : '')"""
    )


def test_csr_reads_statements_balances_and_charts(live_server, page, screenshots, csr_user, household):
    _log_in(page, live_server)
    page.goto(f"{live_server.url}/accounts/{household.number}/")
    expect(page.get_by_role("heading", level=1)).to_have_text("Harper Household")

    # Both billers' statements, newest first, twelve to a page.
    statements = page.locator("#section-statements")
    expect(statements.get_by_role("heading", name="Statements")).to_be_visible()
    rows = statements.locator("tbody tr")
    expect(rows).to_have_count(12)
    expect(statements).to_contain_text("Northwind Mobile")
    expect(statements).to_contain_text("City Power & Light")
    expect(statements.locator("tr.row--overdue")).to_have_count(1)
    expect(statements).to_contain_text("Statements 1–12 of 48")

    # Balances: one biller agrees with the ledger, the other differs by the late fee.
    balances = page.locator("#section-biller-balances")
    expect(balances.locator("tr", has_text="Northwind Mobile")).to_contain_text("Reconciled")
    expect(balances.locator("tr", has_text="City Power & Light")).to_contain_text("Differs by $12.40")
    expect(balances).to_contain_text("Entered in this product")

    # Charts: every canvas has a Chart.js chart drawn from its json_script.
    charts = page.locator("#section-charts")
    charts.scroll_into_view_if_needed()
    expect(charts.locator("canvas[data-chart]")).to_have_count(6)  # a lazy section: loaded after the page
    page.wait_for_function(ALL_CHARTS_DRAWN)
    assert _charts_drawn(page) == ["bar", "pie", "line", "line", "line", "line"]
    expect(charts.get_by_text("Billing by month", exact=True)).to_be_visible()
    _unstick_topbar(page)
    page.screenshot(path=str(screenshots / "account-page.png"), full_page=True)
    for key in ("biller-balances", "statements", "charts"):
        page.locator(f"#section-{key}").screenshot(path=str(screenshots / f"section-{key}.png"))

    # The data behind a chart is a table a screen reader (or anyone) can open.
    charts.get_by_text("Charge types as a table").click()
    expect(charts.locator("#chart-charge-types table")).to_contain_text("Recurring")
    charts.locator("#chart-charge-types").screenshot(path=str(screenshots / "chart-charge-types-table.png"))

    # Pagination inside the section (htmx): the page does not reload, the section moves on.
    page.evaluate("window.__notReloaded = true")
    statements.get_by_role("link", name="Older").click()
    expect(statements).to_contain_text("Statements 13–24 of 48")
    assert page.evaluate("window.__notReloaded") is True

    # Refreshing the charts section (htmx swap) redraws every chart, destroying the old instances.
    page.evaluate("window.__oldCanvas = document.querySelector('#section-charts canvas')")
    page.locator("#section-charts .icon-btn").click()
    page.wait_for_function(
        "() => !window.__oldCanvas.isConnected && Object.keys(Chart.instances).length === 6"
        " && [...document.querySelectorAll('canvas[data-chart]')].every(c => Chart.getChart(c))"
    )
    assert page.evaluate("Chart.getChart(window.__oldCanvas)") is None  # the old instance was destroyed

    # Open the newest Northwind statement.
    newest = Statement.objects.filter(account=household, biller__code="northwind").order_by(
        "-statement_date"
    )[0]
    page.goto(f"{live_server.url}/accounts/{household.number}/")
    page.locator("#section-statements").get_by_role("link", name=newest.number).click()
    expect(page).to_have_url(re.compile(rf"/statements/accounts/{household.number}/statements/{newest.pk}/$"))
    expect(page.get_by_role("heading", level=1)).to_have_text(newest.number)
    expect(page.locator("[data-total-due]")).to_have_text(f"${newest.total_due:,.2f}")
    expect(page.locator("tbody[data-service='+1 555 0100']")).to_contain_text("International calls")
    expect(page.get_by_role("heading", name="Usage summary")).to_be_visible()
    page.screenshot(path=str(screenshots / "statement-page.png"), full_page=True)

    crumbs = page.get_by_role("navigation", name="Breadcrumb")
    crumbs.get_by_role("link", name="Harper Household").click()
    expect(page).to_have_url(re.compile(rf"/accounts/{household.number}/$"))


def test_statement_page_on_a_phone_and_a_purged_statement(
    live_server, browser, screenshots, csr_user, household
):
    statement = Statement.objects.filter(account=household, biller__code="citypower").order_by(
        "statement_date"
    )[0]
    Statement.objects.filter(pk=statement.pk).update(
        usage_detail_purged_at=timezone.now() - dt.timedelta(days=3)
    )
    context = browser.new_context(viewport={"width": 390, "height": 844}, locale="en-US")
    page = context.new_page()
    try:
        _log_in(page, live_server)
        page.goto(f"{live_server.url}/statements/accounts/{household.number}/statements/{statement.pk}/")
        expect(page.get_by_role("note")).to_contain_text("Usage detail lines were removed")
        page.screenshot(path=str(screenshots / "statement-page-phone.png"), full_page=True)
        page.goto(f"{live_server.url}/accounts/{household.number}/")
        page.wait_for_function(ALL_CHARTS_DRAWN)
        _unstick_topbar(page)
        for key in ("biller-balances", "statements"):
            page.locator(f"#section-{key}").screenshot(path=str(screenshots / f"section-{key}-phone.png"))
    finally:
        context.close()
