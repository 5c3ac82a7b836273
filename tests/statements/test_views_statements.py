"""The Statements and Account balances sections of the account page, and the page's query count with years of
statement history."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group, Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from billing_mgmt import roles
from statements.models import FinancialTransaction, Statement
from statements.selectors import biller_balances
from statements.services import balance_snapshot_record, ingest_records, transaction_post
from tests.factories import statement_record
from tests.pages import whole_page
from tests.statements.history import make_statement, monthly_history

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def account(account_factory):
    return account_factory(name="Harper Household")


def _page(client, account) -> str:
    """The account page as a browser shows it: its lazy parts loaded (tests/pages.py)."""
    return whole_page(client, reverse("account-detail", args=[account.number]))


def _section(client, account, key: str, query: str = "", **headers):
    return client.get(reverse("account-section", args=[account.number, key]) + query, **headers)


def _section_html(body: str, key: str) -> str:
    """The body of one section card of the account page."""
    start = body.index(f'id="section-{key}-body"')
    return body[start : body.index("</section>", start)]


def _statement_numbers(html: str) -> list[str]:
    return re.findall(r'<a class="cell-main mono" href="[^"]+">([^<]+)</a>', html)


# Statements section --------------------------------------------------------------------------------------


def test_statements_section_lists_both_billers_newest_first(csr_client, account, northwind, citypower):
    make_statement(
        account=account,
        biller=northwind,
        statement_date=dt.date(2026, 1, 3),
        number="NW-1",
        new_charges="40.00",
        taxes="3.20",
        total_due="1234.56",
        due_date=dt.date(2026, 1, 24),
        status="overdue",
    )
    make_statement(
        account=account,
        biller=citypower,
        statement_date=dt.date(2026, 2, 1),
        number="CP-1",
        new_charges="100.00",
        period_start=dt.date(2026, 1, 1),
        period_end=dt.date(2026, 1, 31),
        status="paid",
    )
    make_statement(account=account, biller=citypower, statement_date=dt.date(2026, 1, 3), number="CP-0")

    html = _section_html(_page(csr_client, account), "statements")

    # Same date: the later id first (the model's order).
    assert _statement_numbers(html) == ["CP-1", "CP-0", "NW-1"]
    nw = Statement.objects.get(number="NW-1")
    assert f'href="/statements/accounts/{account.number}/statements/{nw.pk}/">NW-1</a>' in html
    assert "$1,234.56" in html
    assert "Jan 24, 2026" in html and "Feb 1, 2026" in html
    assert "Jan 1 – Jan 31, 2026" in html
    assert 'class="row--overdue"' in html and html.count('class="row--overdue"') == 1
    assert '<span class="badge badge--status badge--stmt-overdue">Overdue</span>' in html
    assert '<span class="badge badge--status badge--stmt-paid">Paid</span>' in html
    assert '<td class="hide-sm">Northwind Mobile</td>' in html
    assert '<td class="hide-sm">City Power</td>' in html
    assert "Statement pages" not in html  # one page: no pager


def test_statements_section_formats_amounts_in_the_accounts_locale(csr_client, account, northwind):
    account.billing_profile.locale = "de_DE"
    account.billing_profile.currency = "EUR"
    account.billing_profile.save()
    make_statement(
        account=account,
        biller=northwind,
        statement_date=dt.date(2026, 1, 3),
        currency="EUR",
        new_charges="1234.50",
    )
    html = _section(csr_client, account, "statements", **HTMX).content.decode()
    assert "1.234,50\xa0€" in html


def test_statements_section_empty_state(csr_client, account):
    html = _section_html(_page(csr_client, account), "statements")
    assert "No statements yet." in html
    assert "<table" not in html


def test_statements_are_paginated_twelve_to_a_page_with_htmx_and_without(csr_client, account, northwind):
    monthly_history(account=account, biller=northwind, months=30, lines=1, usage=False)
    numbers = list(Statement.objects.filter(account=account).values_list("number", flat=True))  # newest first

    first = _section_html(_page(csr_client, account), "statements")
    assert _statement_numbers(first) == numbers[:12]
    assert "Statements 1–12 of 30" in first and "Page 1 of 3" in first
    url = reverse("account-section", args=[account.number, "statements"])
    # The "Older" link works without JavaScript (the section's own page) and with htmx (in place).
    assert f'href="{url}?page=2"' in first
    assert f'hx-get="{url}?page=2" hx-target="#section-statements-body"' in first
    assert '<span class="btn btn--secondary btn--sm" aria-disabled="true">Newer</span>' in first

    fragment = _section(csr_client, account, "statements", "?page=2", **HTMX)
    body = fragment.content.decode()
    assert "<html" not in body
    assert _statement_numbers(body) == numbers[12:24]
    assert "Statements 13–24 of 30" in body
    assert f'href="{url}?page=1"' in body and f'href="{url}?page=3"' in body

    page3 = _section(csr_client, account, "statements", "?page=3")  # no htmx: a page of its own
    html = page3.content.decode()
    assert "<html" in html and "Back to account" in html
    assert _statement_numbers(html) == numbers[24:]
    assert '<span class="btn btn--secondary btn--sm" aria-disabled="true">Older</span>' in html


@pytest.mark.parametrize(
    ("query", "expected_page"),
    [("?page=abc", 1), ("?page=0", 3), ("?page=99", 3), ("?page=-1", 3), ("?page=", 1)],
)
def test_a_page_that_does_not_exist_shows_one_that_does(csr_client, account, northwind, query, expected_page):
    monthly_history(account=account, biller=northwind, months=25, lines=1, usage=False)
    body = _section(csr_client, account, "statements", query, **HTMX).content.decode()
    assert f"Page {expected_page} of 3" in body


def test_the_account_page_shows_the_first_page_whatever_its_query(csr_client, account, northwind):
    monthly_history(account=account, biller=northwind, months=13, lines=1, usage=False)
    response = csr_client.get(reverse("account-detail", args=[account.number]) + "?page=2")
    assert "Statements 1–12 of 13" in _section_html(response.content.decode(), "statements")


# Account balances section ----------------------------------------------------------------------------


def _post_statement(biller, ref: str, external_id: str, **kwargs):
    (result,) = ingest_records(biller=biller, records=[statement_record(ref, external_id, **kwargs)])
    assert result.status == "accepted", result.as_dict()


@pytest.fixture
def two_billers(account, northwind, citypower, biller_factory, biller_reference_factory):
    """Northwind billed 40.50 and reports 40.50; City Power billed 40.50 and reports 52.90; Southern Gas
    billed 40.50 and reports nothing; a CSR took a 15.00 payment in this product."""
    gas = biller_factory(code="gas", name="Southern Gas")
    for biller, ref in ((northwind, "NW-1"), (citypower, "CP-1"), (gas, "SG-1")):
        biller_reference_factory(account=account, biller=biller, external_ref=ref)
        _post_statement(
            biller,
            ref,
            f"{ref}-S1",
            statement_date="2026-01-31",
            period_start="2026-01-01",
            period_end="2026-01-31",
            due_date="2026-02-14",
        )
    as_of = dt.datetime(2026, 2, 1, 12, 0, tzinfo=dt.UTC)
    balance_snapshot_record(
        biller=northwind, account=account, as_of=as_of, amount=Decimal("40.50"), currency="USD"
    )
    balance_snapshot_record(
        biller=citypower, account=account, as_of=as_of, amount=Decimal("52.90"), currency="USD"
    )
    transaction_post(account=account, kind=FinancialTransaction.Kind.PAYMENT, amount="-15.00", currency="USD")
    return gas


def test_biller_balances_selector_compares_each_biller_and_totals_the_ledger(
    account, northwind, citypower, two_billers, django_assert_num_queries
):
    with django_assert_num_queries(4):
        balances = biller_balances(account_id=account.pk)
    rows = [
        (r.biller_name, r.biller_amount, r.ledger_amount, r.difference, r.is_reconciled, r.has_snapshot)
        for r in balances.rows
    ]
    assert rows == [
        ("City Power", Decimal("52.90"), Decimal("40.50"), Decimal("12.40"), False, True),
        ("Northwind Mobile", Decimal("40.50"), Decimal("40.50"), Decimal("0.00"), True, True),
        ("Southern Gas", None, Decimal("40.50"), None, False, False),
    ]
    assert (balances.total, balances.currency, balances.own_amount, balances.differences) == (
        Decimal("106.50"),
        "USD",
        Decimal("-15.00"),
        1,
    )


def test_account_balances_section_shows_the_flags_and_the_total(csr_client, account, two_billers):
    html = _section_html(_page(csr_client, account), "biller-balances")
    rows = {
        m[0]: m[1]
        for m in re.findall(
            r'<tr data-biller="\d+">\s*<th scope="row" class="cell-main">([^<]+)'
            r"(.*?)</tr>",
            html,
            re.S,
        )
    }
    assert set(rows) == {"City Power", "Northwind Mobile", "Southern Gas"}
    assert "Differs by $12.40" in rows["City Power"]
    assert 'class="recon recon--warn"' in rows["City Power"]
    assert "$52.90" in rows["City Power"] and "as of Feb 1, 2026 12:00" in rows["City Power"]
    assert "Reconciled" in rows["Northwind Mobile"] and "Differs" not in rows["Northwind Mobile"]
    assert "no balance reported" in rows["Southern Gas"] and "$40.50" in rows["Southern Gas"]
    assert "1 biller reports a balance that differs from the ledger." in html
    assert "Entered in this product" in html and "-$15.00" in html
    assert '<td class="num" data-total>$106.50</td>' in html


def test_account_balances_section_empty_state(csr_client, account):
    html = _section_html(_page(csr_client, account), "biller-balances")
    assert "No balances yet." in html


def test_account_balances_without_differences_has_no_warning(
    csr_client, account, northwind, biller_reference_factory
):
    biller_reference_factory(account=account, biller=northwind, external_ref="NW-1")
    _post_statement(northwind, "NW-1", "S1")
    balance_snapshot_record(
        biller=northwind, account=account, as_of=timezone.now(), amount=Decimal("40.50"), currency="USD"
    )
    html = _section(csr_client, account, "biller-balances", **HTMX).content.decode()
    assert (
        "Reconciled" in html
        and "differs from the ledger" not in html
        and "Entered in this product" not in html
    )


# Who sees the sections --------------------------------------------------------------------------------------


@pytest.mark.parametrize("user_fixture", ["csr_user", "supervisor_user", "billing_admin_user"])
def test_staff_roles_see_the_sections(client, request, user_fixture, account):
    client.force_login(request.getfixturevalue(user_fixture))
    body = _page(client, account)
    for key, title in (
        ("biller-balances", "Account balances"),
        ("statements", "Statements"),
        ("charts", "Billing &amp; usage"),
    ):
        assert f'id="section-{key}-title">{title}</h2>' in body
        assert _section(client, account, key, **HTMX).status_code == 200
    # In page order: balances, statements, charts, then the ledger.
    order = [
        body.index(f'id="section-{key}"') for key in ("biller-balances", "statements", "charts", "ledger")
    ]
    assert order == sorted(order)


def test_customer_gets_403_and_anonymous_goes_to_log_in(client, user_factory, account):
    url = reverse("account-section", args=[account.number, "statements"])
    response = client.get(url)
    assert response.status_code == 302 and response.url.startswith("/login/?next=")
    client.force_login(user_factory(username="customer", role=roles.CUSTOMER))
    assert client.get(url, **HTMX).status_code == 403
    assert client.get(reverse("account-detail", args=[account.number])).status_code == 403


def test_a_role_without_the_permission_does_not_see_the_sections(csr_client, account):
    csr = Group.objects.get(name=roles.CSR)
    csr.permissions.remove(
        *Permission.objects.filter(
            content_type__app_label="statements",
            codename__in=["view_statement", "view_billerbalancesnapshot"],
        )
    )
    body = _page(csr_client, account)
    for key in ("biller-balances", "statements", "charts"):
        assert f'id="section-{key}"' not in body
        assert _section(csr_client, account, key, **HTMX).status_code == 404
    assert 'id="section-ledger"' in body


# Query count ---------------------------------------------------------------------------------------------


def _account_page_queries(client, account) -> list[str]:
    with CaptureQueriesContext(connection) as queries:
        body = _page(client, account)
    assert "Statements 1–12 of" in body
    return [q["sql"] for q in queries.captured_queries]


def test_account_page_queries_do_not_grow_with_statement_history(
    csr_client, account_factory, northwind, citypower
):
    """Five years of monthly statements of 50 lines (60 statements, 3000 lines) cost the account page the
    same queries as one year."""
    one_year = account_factory(name="One year")
    five_years = account_factory(name="Five years")
    for acct, months in ((one_year, 12), (five_years, 60)):
        monthly_history(account=acct, biller=northwind, months=months, lines=50, prefix=f"N{months}")
        monthly_history(account=acct, biller=citypower, months=months, lines=5, prefix=f"C{months}")
        for biller in (northwind, citypower):
            balance_snapshot_record(
                biller=biller, account=acct, as_of=timezone.now(), amount=Decimal("10.00"), currency="USD"
            )
            transaction_post(account=acct, kind="bill", amount="10.00", currency="USD", biller=biller)
    assert Statement.objects.filter(account=five_years).count() == 120
    assert five_years.statements.filter(biller=northwind).first().lines.count() == 50

    # The first view of an account writes the session (the recent accounts); measure the views after it.
    _page(csr_client, one_year)
    short = _account_page_queries(csr_client, one_year)
    _page(csr_client, five_years)
    long = _account_page_queries(csr_client, five_years)
    assert len(short) == len(long), "\n".join(long)
    # The sections read statements and snapshots in seven queries: the page with its count, billing by
    # month, by charge type (two), usage, the latest snapshots, and the freshness section's last statement
    # received per biller (the other sections never read those tables). The whole page: its first response
    # and its lazy parts (each request within 15: tests/accounts/test_page_query_guards.py).
    mine = [
        sql
        for sql in long
        if re.search(r"statements_(statement|usagesummary|billerbalancesnapshot)\b", sql)
        and not sql.startswith('SELECT "invoicing_invoice"')  # the Invoices section (tests/invoicing)
        and not sql.startswith('SELECT "payments_')  # Payments & adjustments (tests/payments)
        and not sql.startswith('SELECT "disputes_')  # Cases and Disputes (tests/disputes/test_views.py)
        and '"statements_statement"."disputed_amount" > 0' not in sql  # the Past due tile (tests/disputes)
    ]
    assert len(mine) == 7, "\n".join(mine)
    assert len(long) <= 45, "\n".join(long)  # four requests: the first response and three lazy parts
