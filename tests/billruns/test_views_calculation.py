"""The statement page's Calculation panel ("why is this charge this much?"): registered by billruns through
billing_mgmt.sections, so statements never imports billruns; each line of an engine bill links to the
calculation row behind it; bounded queries whatever the number of lines."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.contrib.auth.models import Group, Permission
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from billing_mgmt import roles, sections
from billruns.models import CalculationLine
from billruns.services import bill_create
from statements.models import Statement
from statements.services import ingest_records
from tests.billruns import builders as b
from tests.billruns.pages import BILL_DATE, add_subscriptions, billed_household, mobile_plan
from tests.factories import statement_record

pytestmark = pytest.mark.django_db


@pytest.fixture
def billed():
    account, subscription, plan = billed_household()
    statement = bill_create(account=account, bill_date=BILL_DATE).statement
    return account, statement


def _url(statement: Statement) -> str:
    return reverse("statement-detail", args=[statement.account.number, statement.pk])


def _get(client, statement: Statement) -> str:
    response = client.get(_url(statement))
    assert response.status_code == 200
    return response.content.decode()


def _panel(body: str) -> str:
    start = body.index('id="panel-calculation"')
    return body[start : body.index("</section>", start)]


def _calc_rows(body: str) -> dict[str, str]:
    """Calculation rows by their anchor id."""
    return dict(
        re.findall(
            r'<tr class="row--calc[^"]*" id="(calc-line-\d+)" tabindex="-1"[^>]*>(.*?)</tr>', body, re.S
        )
    )


def test_panel_is_registered_by_billruns():
    (panel,) = [p for p in sections.statement_panels() if p.key == "calculation"]
    assert (panel.title, panel.permission, panel.view) == (
        "Calculation",
        "billruns.view_calculationline",
        "billruns.views.calculation_panel",
    )


def test_a_panel_key_cannot_be_taken_twice():
    with pytest.raises(ImproperlyConfigured, match="'calculation' is already registered differently"):
        sections.register_statement_panel("calculation", "tests.other.view", permission=None)
    sections.register_statement_panel(  # the same definition again is harmless
        "calculation", "billruns.views.calculation_panel", permission="billruns.view_calculationline",
        order=10, title="Calculation",
    )  # fmt: skip
    assert len([p for p in sections.statement_panels() if p.key == "calculation"]) == 1


def test_panel_shows_each_segment_with_its_calculation_lines(csr_client, billed):
    account, statement = billed
    body = _get(csr_client, statement)
    panel = _panel(body)
    assert '<h2 class="card__title" id="panel-calculation-title">Calculation</h2>' in panel
    assert "1 subscription period, 3 calculation lines, $39.60 in all." in panel
    assert '<summary class="calc-panel__toggle">Show how each charge was calculated</summary>' in panel
    assert (
        '<span class="visually-hidden">Service </span><span class="mono">+15550100100</span>' in panel
        and "· Jun 1 – Jun 30, 2026" in panel
    )
    rows = _calc_rows(panel)
    kinds = [re.search(r'<span class="calc-kind">([^<]+)</span>', row).group(1) for row in rows.values()]
    assert kinds == ["One-time", "Recurring", "Tax"]
    recurring = next(row for row in rows.values() if "Recurring" in row)
    assert '<span class="cell-main">Monthly fee (in advance, 21 of 30 days)</span>' in recurring
    cells = re.findall(r'<td class="num[^"]*"[^>]*>(.*?)</td>', recurring, re.S)
    # quantity, rate, proration, base, amount
    assert cells == ["1", "$30.00", "0.7", "", "$21.00"]
    tax = next(row for row in rows.values() if "Tax" in row)
    assert re.findall(r'<td class="num[^"]*"[^>]*>(.*?)</td>', tax, re.S) == [
        "",
        "10%",
        "",
        "$36.00",
        "$3.60",
    ]
    assert "Charges $36.00 · taxes $3.60" in panel
    assert '<td class="num" data-segment-total>$39.60</td>' in panel


def test_each_statement_line_links_to_its_calculation_row(csr_client, billed):
    account, statement = billed
    body = _get(csr_client, statement)
    rows = _calc_rows(body)
    links = re.findall(
        r'<a class="how-link" href="#(calc-line-\d+)">How<span class="visually-hidden"> this charge', body
    )
    expected = [
        f"calc-line-{pk}"
        for pk in statement.lines.order_by("position").values_list("calculation_line_id", flat=True)
    ]
    assert len(expected) == CalculationLine.objects.filter(segment__statement=statement).count() == 3
    assert sorted(links) == sorted(expected)
    assert set(links) == set(rows)


def test_included_tax_is_marked(csr_client, account_factory):
    account = account_factory()
    category, jurisdiction = b.tax("20", inclusive=True, category="vat", name="VAT")
    plan = mobile_plan(fee="36.00", tax_category=category, activation=None)
    b.subscription(account, plan, dt.date(2026, 6, 1), jurisdiction=jurisdiction)
    statement = bill_create(account=account, bill_date=BILL_DATE).statement
    panel = _panel(_get(csr_client, statement))
    tax = next(row for row in _calc_rows(panel).values() if "VAT 20% (included in prices)" in row)
    assert '<span class="badge badge--neutral calc-included">Included in prices, not added</span>' in tax
    assert "(of which $6.00 included in prices)" in panel
    assert '<td class="num" data-segment-total>$36.00</td>' in panel


def test_a_childs_charges_on_the_parents_bill_say_whose(csr_client, account_factory):
    parent, _, plan = billed_household(name="Holding")
    child = account_factory(name="Store 7", parent=parent, is_paying=False)
    add_subscriptions(child, plan, 1)
    statement = bill_create(account=parent, bill_date=BILL_DATE).statement
    assert statement.total_due == b.D("79.20")  # both subscriptions' 39.60
    panel = _panel(_get(csr_client, statement))
    assert f'<span class="calc-segment__account muted">· Store 7 {child.number}</span>' in panel
    assert (
        panel.count("calc-segment__account") == 2
    )  # the child's segment only (its header for wide and narrow)


def test_no_panel_for_a_billers_statement(
    csr_client, account_factory, biller_factory, biller_reference_factory
):
    account = account_factory()
    northwind = biller_factory(code="northwind", name="Northwind")
    biller_reference_factory(account=account, biller=northwind, external_ref="NW-1")
    lines = [{"type": "recurring", "product": "Plan", "amount": "40.00", "tax": "0.00"}]
    (result,) = ingest_records(biller=northwind, records=[statement_record("NW-1", "S-1", lines=lines)])
    body = _get(csr_client, Statement.objects.get(pk=result.id))
    assert 'id="panel-calculation"' not in body
    assert "how-link" not in body


def test_without_the_permission_there_is_no_panel_and_no_links(csr_client, billed):
    _, statement = billed
    Group.objects.get(name=roles.CSR).permissions.remove(
        Permission.objects.get(content_type__app_label="billruns", codename="view_calculationline")
    )
    body = _get(csr_client, statement)
    assert 'id="panel-calculation"' not in body and "how-link" not in body
    assert "Monthly fee (in advance, 21 of 30 days)" in body  # the statement's own lines are still there


def test_customer_gets_403_and_anonymous_goes_to_log_in(client, user_factory, billed):
    _, statement = billed
    response = client.get(_url(statement))
    assert (response.status_code, response.url) == (302, f"/login/?next={_url(statement)}")
    client.force_login(user_factory(username="customer", role=roles.CUSTOMER))
    assert client.get(_url(statement)).status_code == 403


def _queries(client, statement) -> int:
    with CaptureQueriesContext(connection) as queries:
        _get(client, statement)
    return len(queries.captured_queries)


def test_queries_do_not_grow_with_lines(csr_client, billed, django_assert_max_num_queries):
    _, small = billed
    account, _, plan = billed_household(name="Big business")
    add_subscriptions(account, plan, 15)
    big = bill_create(account=account, bill_date=BILL_DATE).statement
    # An activation fee, a monthly fee and a tax line per subscription.
    assert big.lines.count() == CalculationLine.objects.filter(segment__statement=big).count() == 16 * 3

    _get(csr_client, small)  # the first view writes the session
    # The statement page's eight (session, user, groups, permissions (2), statement, lines, usage) and the
    # panel's two: the statement's segments with their subscriptions, their calculation lines; the Invoice
    # panel's one (the bill's invoice: none here; its deliveries are a second one when it has one); the
    # Disputes panel's one (the statement's disputes).
    with django_assert_max_num_queries(12):
        _get(csr_client, big)
    assert _queries(csr_client, small) == _queries(csr_client, big)
