"""The "Billing & usage" section: chart data in json_script (exact numbers), captions, accessible names and
data tables, local scripts on the full page only, a constant number of queries."""

from __future__ import annotations

import datetime as dt
import json
import re

import pytest
from django.contrib.staticfiles import finders
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from django.utils.dateformat import format as format_date

from billing_mgmt import roles
from statements.models import Statement
from statements.selectors import month_window
from statements.views.charts import PALETTE, USAGE_COLOUR, biller_colours, usage_label
from tests.pages import whole_page
from tests.statements.history import make_statement, monthly_history

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}
CHARTJS = "/static/vendor/chartjs/chart-4.6.1.umd.min.js"
CHARTS_JS = "/static/statements/charts.js"


@pytest.fixture
def account(account_factory):
    return account_factory(name="Harper Household")


@pytest.fixture
def history(account, northwind, citypower):
    """Northwind: 30 months of 10 lines (8 x 10.00 recurring, 2 x 2.50 usage, 0.80 tax each: 93.00 billed a
    month), voice 100 min and data 1000 MB a month. City Power: the last 3 months of 5 lines (4 x 10.00, 1 x
    2.50, tax 4.00: 46.50), the same usage."""
    monthly_history(account=account, biller=northwind, months=30, lines=10, prefix="N")
    monthly_history(account=account, biller=citypower, months=3, lines=5, prefix="C")


def _section(client, account, **headers) -> str:
    response = client.get(reverse("account-section", args=[account.number, "charts"]), **headers)
    assert response.status_code == 200
    return response.content.decode()


def _spec(html: str, element_id: str) -> dict:
    match = re.search(rf'<script id="{element_id}" type="application/json">(.*?)</script>', html, re.S)
    assert match, f"no json_script {element_id}"
    return json.loads(match.group(1))


def _labels() -> list[str]:
    return [format_date(m, "M Y") for m in month_window(months=24, today=timezone.localdate())]


def test_billing_by_month_chart_data_is_exact(csr_client, account, northwind, citypower, history):
    html = _section(csr_client, account, **HTMX)
    spec = _spec(html, "chart-billing-data")
    assert spec["kind"] == "bar"
    assert spec["labels"] == _labels()
    assert (spec["currency"], spec["locale"]) == ("USD", "en-US")
    colours = {northwind.pk: PALETTE[0], citypower.pk: PALETTE[1]}  # by biller id: northwind was first
    assert spec["datasets"] == [
        {"label": "City Power", "data": ["0.00"] * 21 + ["46.50"] * 3, "color": colours[citypower.pk]},
        {"label": "Northwind Mobile", "data": ["93.00"] * 24, "color": colours[northwind.pk]},
    ]
    # Caption says which amount; the canvas names itself and sums the chart up.
    assert "New charges plus taxes of each statement (not the total due" in html
    labels = _labels()
    assert (
        '<canvas role="img" aria-label="Stacked bar chart of billing by month for the last 24 months, '
        "by biller (City Power, Northwind Mobile): $2,371.50 in total; "
        f'highest month {labels[21]} with $139.50."'
    ) in html
    # The legend and the data table carry the same numbers.
    assert 'City Power <span class="muted">$139.50</span>' in html
    assert 'Northwind Mobile <span class="muted">$2,232.00</span>' in html
    table = html[html.index("Billing by month as a table") : html.index("</details>")]
    rows = re.findall(r'<tr><th scope="row">([^<]+)</th>((?:<td class="num">[^<]*</td>)+)</tr>', table)
    assert len(rows) == 24
    assert rows[0] == (
        labels[0],
        '<td class="num">$0.00</td><td class="num">$93.00</td><td class="num">$93.00</td>',
    )
    assert rows[23][1] == '<td class="num">$46.50</td><td class="num">$93.00</td><td class="num">$139.50</td>'
    assert '<td class="num">$139.50</td><td class="num">$2,232.00</td><td class="num">$2,371.50</td>' in table


def test_charge_type_chart_data_is_exact(csr_client, account, history):
    html = _section(csr_client, account, **HTMX)
    spec = _spec(html, "chart-charge-types-data")
    # Last 12 months: Northwind 12 x (80.00 recurring + 5.00 usage), City Power 3 x (40.00 + 2.50).
    assert spec["kind"] == "pie"
    assert spec["labels"] == ["Recurring", "Usage"]
    assert spec["datasets"][0]["data"] == ["1080.00", "67.50"]
    assert spec["datasets"][0]["colors"] == ["#0072b2", "#e69f00"]
    table = html[html.index("Charge types as a table") :]
    table = table[: table.index("</details>")]
    row = r'<tr data-line-type="(\w+)">.*?</th><td class="num">(\d+)</td><td class="num">([^<]+)</td>'
    assert re.findall(row + r'<td class="num">([^<]+)</td>', table) == [
        ("recurring", "108", "$1,080.00", "94.1%"),
        ("usage", "27", "$67.50", "5.9%"),
    ]  # fmt: skip
    assert '<td class="num">$1,147.50</td>' in table
    assert (
        'aria-label="Pie chart of billing by charge type over the last 12 months: '
        'Recurring $1,080.00, Usage $67.50."' in html
    )
    assert "Discounts and credits are negative" not in html
    assert "lost their usage lines" not in html


def test_discounts_are_listed_but_not_drawn_and_purged_statements_are_said(csr_client, account, northwind):
    today = timezone.localdate()
    make_statement(
        account=account,
        biller=northwind,
        statement_date=today,
        lines=[("recurring", "50.00"), ("discount", "-5.00")],
        usage_detail_purged_at=timezone.now(),
    )
    html = _section(csr_client, account, **HTMX)
    spec = _spec(html, "chart-charge-types-data")
    assert (spec["labels"], spec["datasets"][0]["data"]) == (["Recurring"], ["50.00"])
    assert '<tr data-line-type="discount">' in html and "-$5.00" in html
    assert "Discounts and credits are negative: listed in the table, not drawn." in html
    assert "1 of these statements lost their usage lines to data retention" in html


def test_usage_charts_one_per_type_and_unit(csr_client, account, history):
    html = _section(csr_client, account, **HTMX)
    data = _spec(html, "chart-usage-0-data")
    voice = _spec(html, "chart-usage-1-data")
    assert (data["kind"], data["unit"], voice["unit"]) == ("line", "MB", "min")
    assert data["datasets"] == [
        {"label": "Data (MB)", "data": ["1000"] * 21 + ["2000"] * 3, "color": USAGE_COLOUR}
    ]
    assert voice["datasets"][0]["data"] == ["100"] * 21 + ["200"] * 3
    assert "Usage: Data (MB)" in html and "Usage: Voice (min)" in html
    assert (
        'aria-label="Line chart of Voice (min) by month over the last 24 months: 24 months reported' in html
    )
    assert "chart-usage-2-data" not in html


def test_unreported_usage_months_are_gaps_not_zeros(csr_client, account, northwind):
    today = timezone.localdate()
    make_statement(
        account=account, biller=northwind, statement_date=today, usage=[("electricity", "kWh", "640.25")]
    )
    html = _section(csr_client, account, **HTMX)
    spec = _spec(html, "chart-usage-0-data")
    assert spec["datasets"][0]["data"] == [None] * 23 + ["640.25"]
    assert "1 month reported" in html
    # Billing of that statement (no amounts) is zero, still drawn on 24 months.
    assert _spec(html, "chart-billing-data")["datasets"][0]["data"] == ["0.00"] * 24


def test_amounts_follow_the_accounts_locale_and_currency(csr_client, account, northwind):
    account.billing_profile.locale = "de_DE"
    account.billing_profile.currency = "EUR"
    account.billing_profile.save()
    make_statement(
        account=account,
        biller=northwind,
        statement_date=timezone.localdate(),
        currency="EUR",
        new_charges="1234.50",
        lines=[("recurring", "1234.50")],
    )
    make_statement(
        account=account,
        biller=northwind,
        statement_date=timezone.localdate(),
        new_charges="99.00",
        lines=[("recurring", "99.00")],
    )  # USD: not this account's currency, not charted
    html = _section(csr_client, account, **HTMX)
    spec = _spec(html, "chart-billing-data")
    assert (spec["currency"], spec["locale"]) == ("EUR", "de-DE")
    assert spec["datasets"][0]["data"][-1] == "1234.50"
    assert "1.234,50\xa0€" in html
    assert _spec(html, "chart-charge-types-data")["datasets"][0]["data"] == ["1234.50"]


def test_empty_state_without_statements(csr_client, account):
    html = _section(csr_client, account)  # the section's own page
    assert "Nothing to chart yet." in html
    assert "<canvas" not in html
    # The scripts come anyway: the section may fill in later through an htmx refresh.
    assert CHARTJS in html and CHARTS_JS in html


def test_scripts_are_local_and_loaded_once_by_the_full_page(csr_client, account, history):
    # The section is lazy: the part that brings it brings the scripts (tests/pages.py loads it).
    page = whole_page(csr_client, reverse("account-detail", args=[account.number]))
    assert page.count(f'<script src="{CHARTJS}" defer></script>') == 1
    assert page.count(f'<script src="{CHARTS_JS}" defer></script>') == 1
    # Every asset is served locally (a random token may well contain "cdn": look at the addresses).
    assert not re.findall(r'(?:src|href)="(?:https?:)?//', page)
    # An htmx refresh brings the data only (charts.js redraws after the swap).
    fragment = _section(csr_client, account, **HTMX)
    assert "chart-billing-data" in fragment and CHARTJS not in fragment and CHARTS_JS not in fragment
    # No inline script with data: only json_script blocks and the two static files.
    scripts = re.findall(r"<script([^>]*)>", page)
    assert all('type="application/json"' in s or "src=" in s for s in scripts), scripts
    assert finders.find("vendor/chartjs/chart-4.6.1.umd.min.js")
    assert finders.find("statements/charts.js")


def test_chart_section_queries_do_not_grow_with_history(csr_client, account_factory, northwind):
    one_year = account_factory(name="One year")
    five_years = account_factory(name="Five years")
    monthly_history(account=one_year, biller=northwind, months=12, lines=50, prefix="A")
    monthly_history(account=five_years, biller=northwind, months=60, lines=50, prefix="B")
    counts = []
    for acct in (one_year, five_years, one_year):
        with CaptureQueriesContext(connection) as queries:
            _section(csr_client, acct, **HTMX)
        counts.append(len(queries.captured_queries))
    # session, user, groups, the account and its two prefetches, user and group permissions; the charts: four.
    assert counts[1] == counts[2] <= 12


def test_customer_cannot_read_the_charts(client, user_factory, account):
    client.force_login(user_factory(username="customer", role=roles.CUSTOMER))
    assert client.get(reverse("account-section", args=[account.number, "charts"]), **HTMX).status_code == 403


def test_biller_colours_follow_the_order_of_biller_ids():
    assert biller_colours([42, 7, 7, 19]) == {7: PALETTE[0], 19: PALETTE[1], 42: PALETTE[2]}
    many = biller_colours(range(1, len(PALETTE) + 2))
    assert many[len(PALETTE) + 1] == PALETTE[0]  # beyond the palette, colours repeat
    assert biller_colours([]) == {}


@pytest.mark.parametrize(
    ("slug", "label"),
    [("sms", "SMS"), ("voice", "Voice"), ("street-lights", "Street lights"), ("gas_m3", "Gas m3")],
)
def test_usage_labels(slug, label):
    assert usage_label(slug) == label


def test_statement_counted_in_the_month_of_its_date(csr_client, account, northwind):
    """A statement dated on the first of the month counts in that month, not the previous one (the time zone
    of the database must not shift it)."""
    first = timezone.localdate().replace(day=1)
    make_statement(
        account=account,
        biller=northwind,
        statement_date=first,
        new_charges="10.00",
        period_start=first - dt.timedelta(days=28),
        period_end=first - dt.timedelta(days=1),
    )
    spec = _spec(_section(csr_client, account, **HTMX), "chart-billing-data")
    assert spec["datasets"][0]["data"][-2:] == ["0.00", "10.00"]
    assert Statement.objects.count() == 1
