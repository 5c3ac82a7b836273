"""End to end: a CSR takes a call, sees what two billers billed (one pushes, one is pulled), opens a
statement, clicks "Refresh from billers" and sees the bill the pulled biller has just produced appear."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from statements.models import Statement
from statements.services import biller_pull, ingest_records
from tests.factories import statement_record

pytestmark = pytest.mark.browser

SCREENSHOTS = Path(__file__).resolve().parent.parent.parent / "var" / "screenshots"


@pytest.fixture
def caller(account_factory, biller_factory, biller_reference_factory, fake):
    account = account_factory(name="Grace Hopper")
    northwind = biller_factory(code="northwind", name="Northwind Mobile")
    contoso = biller_factory(code="contoso", name="Contoso Energy", pull_enabled=True, pull_url=fake.url)
    biller_reference_factory(account=account, biller=northwind, external_ref="NW-7")
    biller_reference_factory(account=account, biller=contoso, external_ref="CE-7")
    pushed = [
        statement_record("NW-7", "NW-2026-09", statement_date="2026-09-30", period_start="2026-09-01",
                         period_end="2026-09-30", due_date="2026-10-14", number="NW-0909", status="paid"),
        statement_record("NW-7", "NW-2026-10", number="NW-1010"),
    ]  # fmt: skip
    assert [r.status for r in ingest_records(biller=northwind, records=pushed)] == ["accepted"] * 2
    fake.new_statement("CE-7")
    run = biller_pull(biller_id=contoso.pk, trigger="manual")
    assert (run.status, run.accepted) == ("succeeded", 2)  # a statement and a balance
    return account


def test_csr_sees_both_billers_opens_a_statement_and_refreshes(
    live_server, page, csr_user, caller, fake, eager
):
    # The refresh task runs in the request that queues it (``eager``): tests/statements/test_refresh.py and
    # the Celery worker test cover the queue itself.
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.goto(f"{live_server.url}/login/")
    page.get_by_label("Username").fill("csr")
    page.get_by_label("Password").fill("pass-Word-123")
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("searchbox").first.fill("Grace Hopper")
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", level=1)).to_have_text("Grace Hopper")

    statements = page.locator("#section-statements")
    rows = statements.locator("tbody tr")
    expect(rows).to_have_count(3)
    expect(statements).to_contain_text("Northwind Mobile")
    expect(statements).to_contain_text("Contoso Energy")
    freshness = page.locator("#section-freshness")
    expect(freshness.locator("li[data-biller=contoso]")).to_be_visible()

    # Open the pushed October statement and come back to the account.
    page.get_by_role("link", name="NW-1010").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("NW-1010")
    expect(page.locator("[data-total-due]")).to_have_text("$40.50")
    page.screenshot(path=str(SCREENSHOTS / "refresh-flow-statement.png"), full_page=True)
    page.get_by_role("link", name="Grace Hopper").first.click()
    expect(page).to_have_url(re.compile(rf"/accounts/{caller.number}/$"))

    # Meanwhile the pulled biller bills again; the CSR asks every biller for what is new.
    produced = fake.new_statement("CE-7")
    before = Statement.objects.filter(account=caller).count()
    page.locator("[data-action=refresh-from-billers]").click()
    expect(page.locator("#freshness")).to_have_attribute("data-refresh-status", "done")
    expect(rows).to_have_count(4)
    new = Statement.objects.get(biller__code="contoso", external_id=produced["external_id"])
    expect(statements.get_by_role("link", name=new.number)).to_be_visible()
    assert Statement.objects.filter(account=caller).count() == before + 1
    expect(page.locator("#freshness")).to_contain_text("Refreshed just now")
    page.add_style_tag(content=".topbar { position: static !important; }")  # one bar on a full-page shot
    page.screenshot(path=str(SCREENSHOTS / "refresh-flow-account.png"), full_page=True)
