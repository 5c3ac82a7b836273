"""The page of one statement: header amounts, lines grouped by service and type with subtotals, usage, the
retention note; who may read it; a constant number of queries whatever the number of lines."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group, Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from billing_mgmt import roles
from statements.models import Statement, StatementLine
from statements.selectors import statement_for_account, statement_line_groups
from statements.services import ingest_records
from tests.factories import statement_record
from tests.statements.history import monthly_history

pytestmark = pytest.mark.django_db


@pytest.fixture
def account(account_factory, biller_reference_factory, northwind):
    account = account_factory(name="Harper Household")
    biller_reference_factory(account=account, biller=northwind, external_ref="NW-1")
    return account


LINES = [
    {"type": "recurring", "product": "Unlimited Plan", "service_identifier": "+15550100",
     "description": "Plan", "quantity": "1", "unit": "month", "unit_price": "40.00", "amount": "40.00",
     "tax": "3.20", "period_start": "2026-10-01", "period_end": "2026-10-31"},
    {"type": "usage", "product": "International calls", "service_identifier": "+15550100",
     "description": "Calls to Canada", "quantity": "25", "unit": "min", "unit_price": "0.0125",
     "amount": "0.31", "tax": "0.02"},
    {"type": "usage", "product": "Roaming calls", "service_identifier": "+15550100", "quantity": "10",
     "unit": "min", "unit_price": "0.25", "amount": "2.50", "tax": "0.20"},
    {"type": "discount", "product": "Loyalty discount", "service_identifier": "+15550100", "amount": "-5.00",
     "tax": "-0.40"},
    {"type": "recurring", "product": "Data 10 GB", "service_identifier": "+15550101", "quantity": "1",
     "unit": "month", "unit_price": "30.00", "amount": "30.00", "tax": "2.40"},
    {"type": "one_time", "product": "Activation", "service_identifier": "", "amount": "15.00", "tax": "0.00"},
]  # fmt: skip
USAGE = [
    {"service_identifier": "+15550100", "usage_type": "voice", "quantity": "312", "unit": "min",
     "included_quantity": "1000"},
    {"service_identifier": "+15550101", "usage_type": "data", "quantity": "12288.5", "unit": "MB",
     "included_quantity": "10240"},
    {"service_identifier": "+15550100", "usage_type": "sms", "quantity": "41", "unit": "msg"},
]  # fmt: skip


@pytest.fixture
def statement(account, northwind) -> Statement:
    record = statement_record(
        "NW-1", "S-2026-10", number="NW-2026-10", lines=LINES, usage=USAGE,
        previous_balance="120.00", payments="100.00",
    )  # fmt: skip
    (result,) = ingest_records(biller=northwind, records=[record])
    assert result.status == "accepted", result.as_dict()
    return Statement.objects.get(pk=result.id)


def _url(account, statement) -> str:
    return reverse("statement-detail", args=[account.number, statement.pk])


def _get(client, account, statement) -> str:
    response = client.get(_url(account, statement))
    assert response.status_code == 200
    return response.content.decode()


def test_statement_page_shows_the_header_amounts(csr_client, account, statement):
    assert _url(account, statement) == f"/statements/accounts/{account.number}/statements/{statement.pk}/"
    body = _get(csr_client, account, statement)
    # new charges 40 + 0.31 + 2.50 - 5 + 30 + 15 = 82.81; taxes 5.42; total 120 - 100 + 82.81 + 5.42.
    assert (statement.new_charges, statement.taxes, statement.total_due) == (
        Decimal("82.81"), Decimal("5.42"), Decimal("108.23"),
    )  # fmt: skip
    summary = dict(
        re.findall(r'<tr><th scope="row">([^<]+)</th><td class="num[^"]*">([^<]+)</td></tr>', body)
    )
    assert summary == {
        "Previous balance": "$120.00",
        "Payments received": "-$100.00",
        "Adjustments": "$0.00",
        "New charges": "$82.81",
        "Taxes": "$5.42",
    }
    assert '<div class="statement-head__total" data-total-due>$108.23</div>' in body
    assert "Due Nov 14, 2026" in body
    assert "Statement from Northwind Mobile" in body
    assert '<h1 class="statement-head__title">NW-2026-10</h1>' in body
    assert "badge--stmt-open" in body
    assert "<dt>Period</dt><dd>Oct 1, 2026 – Oct 31, 2026</dd>" in body
    assert "<dt>Version</dt><dd>1, received " in body
    assert '<dd class="mono">S-2026-10</dd>' in body
    assert "Usage detail lines were removed" not in body


def test_statement_page_breadcrumb_leads_back_to_the_account(csr_client, account, statement):
    body = _get(csr_client, account, statement)
    crumbs = body[
        body.index('aria-label="Breadcrumb"') : body.index("</nav>", body.index('aria-label="Breadcrumb"'))
    ]
    assert f'<a href="/accounts/{account.number}/">Harper Household</a>' in crumbs
    assert '<span aria-current="page">NW-2026-10</span>' in crumbs


def test_lines_are_grouped_by_service_then_type_with_subtotals(csr_client, account, statement):
    body = _get(csr_client, account, statement)
    groups = re.findall(r'<tbody class="line-group" data-service="([^"]*)">(.*?)</tbody>', body, re.S)
    # Services in the order the bill lists them; account-level lines last.
    assert [service for service, _ in groups] == ["+15550100", "+15550101", ""]
    first = groups[0][1]
    types = re.findall(r'<tr class="row--type"><th scope="row" colspan="6">([^<]+)</th>', first)
    assert types == ["Recurring", "Usage", "Discount"]
    # The usage subtotal adds 25 + 10 minutes (one unit) and the amounts; one-line types have no subtotal.
    subtotal = re.search(r'<tr class="row--subtotal">(.*?)</tr>', first, re.S).group(1)
    assert "Usage subtotal" in subtotal
    assert re.findall(r"<td[^>]*>([^<]*)</td>", subtotal) == ["35", "min", "", "$2.81", "$0.22"]
    assert first.count('class="row--subtotal"') == 1
    total = re.search(r'<tr class="row--service-total">(.*?)</tr>', first, re.S).group(1)
    assert re.findall(r'<td class="num">([^<]*)</td>', total) == ["$37.81", "$3.02"]
    # A unit price keeps the biller's places; a credit shows as one.
    assert "$0.0125" in first
    assert '<td class="num amount--credit">-$5.00</td>' in first
    assert "Oct 1 – Oct 31, 2026" in first  # the line's own period
    assert "Account charges" in groups[2][1] and "Activation" in groups[2][1]
    assert '<td class="num" data-lines-amount>$82.81</td>' in body
    assert '<td class="num" data-lines-tax>$5.42</td>' in body
    assert 'Charges <span class="muted">· 6 lines</span>' in body


def test_line_groups_selector_sums_quantities_only_in_one_unit():
    def line(position, line_type, amount, service="a", quantity=None, unit=""):
        return StatementLine(
            position=position, line_type=line_type, amount=Decimal(amount), tax=Decimal("0.10"),
            service_identifier=service, quantity=None if quantity is None else Decimal(quantity), unit=unit,
        )  # fmt: skip

    groups = statement_line_groups(
        lines=[
            line(1, "tax", "1.00", service=""),
            line(2, "usage", "2.00", quantity="3", unit="min"),
            line(3, "usage", "4.00", quantity="5", unit="MB"),
            line(4, "recurring", "10.00", quantity="1", unit="month"),
            line(5, "recurring", "10.00", service="b"),
            line(6, "recurring", "10.00", quantity="1", unit="month"),
        ]
    )
    assert [g.service_identifier for g in groups] == ["a", "b", ""]
    a = groups[0]
    assert [(t.line_type, t.amount, t.quantity, t.unit, len(t.lines)) for t in a.types] == [
        ("recurring", Decimal("20.00"), Decimal("2"), "month", 2),
        ("usage", Decimal("6.00"), None, "", 2),  # minutes and megabytes do not add up
    ]
    assert (a.amount, a.tax, a.line_count) == (Decimal("26.00"), Decimal("0.40"), 4)
    assert groups[1].types[0].quantity is None  # a line without a quantity
    assert statement_line_groups(lines=[]) == []


def test_usage_summary_table_with_allowances(csr_client, account, statement):
    body = _get(csr_client, account, statement)
    usage = body[body.index('class="table table--usage"') :]
    usage = usage[: usage.index("</table>")]
    rows = re.findall(r"<tr( class=\"row--over\")?>\s*<td class=\"mono\">([^<]+)</td>\s*<td>([^<]+)<", usage)
    assert [(bool(over), service, label) for over, service, label in rows] == [
        (False, "+15550100", "SMS"),
        (False, "+15550100", "Voice"),
        (True, "+15550101", "Data"),
    ]
    assert "12,288.5" in usage and "10,240" in usage
    assert '<span class="cell-sub text-warn">2,048.5 over</span>' in usage
    assert "1,000" in usage and "312" in usage


def test_purged_usage_detail_is_said(csr_client, account, statement):
    StatementLine.objects.filter(statement=statement, line_type="usage").delete()
    Statement.objects.filter(pk=statement.pk).update(
        usage_detail_purged_at=dt.datetime(2027, 3, 2, 10, 0, tzinfo=dt.UTC)
    )
    body = _get(csr_client, account, statement)
    assert "Usage detail lines were removed on Mar 2, 2027 under the data retention policy." in body
    assert "Roaming calls" not in body and "Unlimited Plan" in body
    assert body.count('class="row--over"') == 1  # the usage summary is kept


def test_statement_without_lines_or_usage(csr_client, account, northwind):
    monthly_history(account=account, biller=northwind, months=1, lines=0, usage=False)
    statement = Statement.objects.get(account=account)
    body = _get(csr_client, account, statement)
    assert "The biller sent this statement without lines." in body
    assert "No usage was reported with this statement." in body


# Access --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("user_fixture", ["csr_user", "supervisor_user", "billing_admin_user"])
def test_staff_roles_may_read_a_statement(client, request, user_fixture, account, statement):
    client.force_login(request.getfixturevalue(user_fixture))
    assert client.get(_url(account, statement)).status_code == 200


def test_customer_gets_403_and_anonymous_goes_to_log_in(client, user_factory, account, statement):
    response = client.get(_url(account, statement))
    assert response.status_code == 302
    assert response.url == f"/login/?next={_url(account, statement)}"
    client.force_login(user_factory(username="customer", role=roles.CUSTOMER))
    assert client.get(_url(account, statement)).status_code == 403


def test_staff_without_the_permission_gets_403(csr_client, account, statement):
    Group.objects.get(name=roles.CSR).permissions.remove(
        Permission.objects.get(content_type__app_label="statements", codename="view_statement")
    )
    assert csr_client.get(_url(account, statement)).status_code == 403


def test_another_accounts_statement_is_404_under_this_accounts_url(
    csr_client, account, statement, account_factory, northwind
):
    other = account_factory(name="Someone else")
    monthly_history(account=other, biller=northwind, months=1, lines=1, prefix="O")
    theirs = Statement.objects.get(account=other)
    assert csr_client.get(reverse("statement-detail", args=[account.number, theirs.pk])).status_code == 404
    assert csr_client.get(reverse("statement-detail", args=[other.number, statement.pk])).status_code == 404
    assert csr_client.get(reverse("statement-detail", args=[other.number, theirs.pk])).status_code == 200
    assert csr_client.get(reverse("statement-detail", args=["NOPE", statement.pk])).status_code == 404
    assert csr_client.get(reverse("statement-detail", args=[account.number, 999999])).status_code == 404
    with pytest.raises(Statement.DoesNotExist):
        statement_for_account(account_number=account.number, statement_id=theirs.pk)


def test_statement_page_refuses_post(csr_client, account, statement):
    assert csr_client.post(_url(account, statement)).status_code == 405


# Query count -----------------------------------------------------------------------------------------------


def _queries(client, account, statement) -> int:
    with CaptureQueriesContext(connection) as queries:
        _get(client, account, statement)
    return len(queries.captured_queries)


def test_statement_page_queries_do_not_grow_with_lines(csr_client, account, northwind, account_factory):
    few = monthly_history(account=account, biller=northwind, months=1, lines=5, prefix="F")[0]
    other = account_factory(name="Five years of fifty lines")
    many = monthly_history(account=other, biller=northwind, months=60, lines=50, prefix="M")[-1]
    assert many.lines.count() == 50

    _get(csr_client, account, few)  # the first view writes the session
    # session, user, groups, user and group permissions, the statement, its lines, its usage; the Disputes
    # panel's disputes of the statement (disputes.views.statement_disputes_panel).
    assert _queries(csr_client, account, few) == _queries(csr_client, other, many) <= 9
