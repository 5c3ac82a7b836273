"""The portal's pages run a fixed number of queries whatever the customer's history (statements, lines,
cases, history events, invoices)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from disputes.services import case_comment, case_open, dispute_open
from invoicing.services import invoices_render
from statements.models import Statement, StatementLine
from tests.disputes.builders import billed_statement

pytestmark = pytest.mark.django_db


def _grow(w, count: int) -> dict:
    """``count`` more statements (rendered invoices, a dispute each), lines, cases and history events."""
    statements = []
    for i in range(count):
        statement = billed_statement(
            w.account, f"INV-G-{i:03d}", [("Mobile plan", "40.00"), ("Roaming", "5.00")]
        )
        Statement.objects.filter(pk=statement.pk).update(
            statement_date=dt.date(2026, 1, 1) + dt.timedelta(days=i)
        )
        statements.append(statement)
        dispute_open(statement=statement, line=statement.lines.get(position=1), amount="1.00", reason="Wrong",
                     channel="portal", actor=w.customer)  # fmt: skip
    invoices_render(statement_ids=[w.statement.pk, *[s.pk for s in statements]], actor="test")
    StatementLine.objects.bulk_create(
        StatementLine(statement=w.statement, position=10 + i, line_type="usage", product=f"Call {i}",
                      amount=Decimal("0.50"), service_identifier=f"+1555000{i % 3}")
        for i in range(count * 3)
    )  # fmt: skip
    case, _ = case_open(account=w.account, process=w.processes["billing-inquiry"], subject="Busy",
                        channel="portal", actor=w.customer)  # fmt: skip
    for i in range(count):
        case_comment(case=case, actor=w.csr if i % 2 else w.customer, text=f"Message {i}")
        case_open(account=w.account, process=w.processes["other-inquiry"], subject=f"Other {i}",
                  channel="portal", actor=w.customer)  # fmt: skip
    dispute_open(statement=w.statement, line=w.line(2), amount="5.00", reason="Wrong", channel="portal",
                 actor=w.customer)  # fmt: skip
    return {"case": case}


# Each page's queries: session, user, the user's groups, the customer's accounts, then the page's own.
BUDGETS = {
    "home": 12,  # + balance, past due (two), next due, latest statement, recent cases, open cases, processes
    "statements": 6,  # + count, page (with invoices)
    "statement": 8,  # + statement, lines, usage, open disputes
    "dispute": 9,  # + statement, lines, usage, line, open disputes
    "cases": 6,  # + count, page
    "case": 7,  # + case, history, which authors are staff
    "help": 5,  # + processes
    "request": 6,  # + processes, the statements to choose from
}


def _urls(w, made) -> dict[str, str]:
    return {
        "home": "/portal/",
        "statements": "/portal/statements/",
        "statement": f"/portal/statements/{w.statement.pk}/",
        "dispute": f"/portal/statements/{w.statement.pk}/dispute/?line={w.line(1).pk}",
        "cases": "/portal/cases/",
        "case": f"/portal/cases/{made['case'].number}/",
        "help": "/portal/help/",
        "request": "/portal/help/extend-due-date/",
    }


@pytest.mark.parametrize("count", [1, 8])
@pytest.mark.parametrize("page", list(BUDGETS))
def test_pages_run_a_fixed_number_of_queries(alice, w, django_assert_max_num_queries, count, page):
    url = _urls(w, _grow(w, count))[page]
    with django_assert_max_num_queries(BUDGETS[page]):
        response = alice.get(url)
    assert response.status_code == 200


def test_the_grown_pages_show_what_was_grown(alice, w):
    made = _grow(w, 3)
    assert "INV-G-002" in alice.get("/portal/statements/").content.decode()
    assert "Call 8" in alice.get(f"/portal/statements/{w.statement.pk}/").content.decode()
    assert "Message 2" in alice.get(f"/portal/cases/{made['case'].number}/").content.decode()
    assert "Other 2" in alice.get("/portal/cases/").content.decode()
