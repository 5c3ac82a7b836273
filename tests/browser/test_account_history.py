"""The History section of the account page in a real browser: a CSR's dispute shows who did it and what
changed, at desktop and phone widths."""

from __future__ import annotations

from decimal import Decimal

import pytest
from playwright.sync_api import expect

from disputes.services import dispute_open
from tests.disputes.builders import world

pytestmark = pytest.mark.browser


def test_the_history_section_lists_who_changed_what(live_server, page, artifacts_dir, transactional_db):
    w = world()
    line = w.statement.lines.get(product="Roaming")
    dispute_open(
        statement=w.statement, line=line, amount=Decimal("25.00"), reason="Never left home",
        channel="csr", actor=w.csr,
    )  # fmt: skip
    page.goto(f"{live_server.url}/login/")
    page.get_by_label("Username").fill(w.csr.username)
    page.get_by_label("Password").fill("pass-Word-123")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Find an account")).to_be_visible()
    page.goto(f"{live_server.url}/accounts/{w.account.number}/")
    section = page.locator("#section-history")
    expect(section.get_by_role("heading", name="History")).to_be_visible()
    table = section.get_by_role("table")
    expect(table).to_be_visible()  # loaded by htmx with the account page's lazy part
    dispute_row = table.locator("tbody tr", has_text="dispute.open")
    expect(dispute_row).to_have_count(1)
    expect(dispute_row).to_contain_text(w.csr.username)
    statement_row = table.locator("tbody tr", has_text="statement.disputed")
    expect(statement_row.locator("[data-change='disputed amount']")).to_contain_text("0.0000 → 25.0000")
    expect(table).not_to_contain_text("— → —")  # a field empty on both sides is not a change
    expect(section.locator(".pager__status")).to_contain_text("Changes 1–")
    section.scroll_into_view_if_needed()
    section.screenshot(path=str(artifacts_dir / "account-history-1440.png"))
    page.set_viewport_size({"width": 390, "height": 844})
    expect(dispute_row).to_be_visible()
    section.screenshot(path=str(artifacts_dir / "account-history-390.png"))
