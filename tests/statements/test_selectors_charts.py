"""statements.selectors.charts: billing by month and biller, by charge type, usage by month; exact sums in
one grouped query each."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.utils import timezone

from statements.selectors import billing_by_charge_type, billing_by_month, month_window, usage_by_month
from tests.statements.history import make_statement, monthly_history

pytestmark = pytest.mark.django_db

TODAY = dt.date(2026, 3, 15)
D = Decimal


@pytest.fixture
def account(account_factory):
    return account_factory(name="Chart Co")


def test_month_window_ends_in_the_current_month_and_crosses_years():
    assert month_window(months=3, today=TODAY) == [
        dt.date(2026, 1, 1),
        dt.date(2026, 2, 1),
        dt.date(2026, 3, 1),
    ]
    window = month_window(months=24, today=TODAY)
    assert (len(window), window[0], window[-1]) == (24, dt.date(2024, 4, 1), dt.date(2026, 3, 1))
    assert month_window(months=1, today=dt.date(2026, 1, 31)) == [dt.date(2026, 1, 1)]
    assert month_window(months=13, today=dt.date(2026, 12, 1))[0] == dt.date(2025, 12, 1)


@pytest.mark.parametrize("months", [0, -1])
def test_month_window_refuses_an_empty_window(months):
    with pytest.raises(ValueError, match="at least 1"):
        month_window(months=months, today=TODAY)


def test_billing_by_month_sums_new_charges_and_taxes_per_biller_and_month(
    account, northwind, citypower, account_factory, django_assert_num_queries
):
    other = account_factory(name="Someone else")
    # Counted: two Northwind statements in January (summed), one in March; City Power in February.
    make_statement(
        account=account,
        biller=northwind,
        statement_date=dt.date(2026, 1, 3),
        new_charges="40.00",
        taxes="3.20",
        total_due="999.00",
    )
    make_statement(
        account=account,
        biller=northwind,
        statement_date=dt.date(2026, 1, 28),
        new_charges="10.00",
        taxes="0.80",
    )
    make_statement(
        account=account,
        biller=northwind,
        statement_date=dt.date(2026, 3, 31),
        new_charges="5.55",
        taxes="0.45",
    )
    make_statement(
        account=account,
        biller=citypower,
        statement_date=dt.date(2026, 2, 1),
        new_charges="100.00",
        taxes="5.00",
    )
    # Not counted: before the window, after the current month, another account, another currency.
    make_statement(
        account=account, biller=citypower, statement_date=dt.date(2025, 12, 31), new_charges="7.00"
    )
    make_statement(account=account, biller=citypower, statement_date=dt.date(2026, 4, 1), new_charges="8.00")
    make_statement(account=other, biller=northwind, statement_date=dt.date(2026, 2, 1), new_charges="9.00")
    make_statement(
        account=account,
        biller=citypower,
        statement_date=dt.date(2026, 2, 2),
        new_charges="11.00",
        currency="EUR",
    )

    with django_assert_num_queries(1):
        data = billing_by_month(account_id=account.pk, months=3, today=TODAY, currency="USD")

    assert data.months == [dt.date(2026, 1, 1), dt.date(2026, 2, 1), dt.date(2026, 3, 1)]
    # Billers by name; total_due (999.00) is not what a month billed.
    assert [(s.biller_name, s.values) for s in data.series] == [
        ("City Power", [D("0"), D("105.00"), D("0")]),
        ("Northwind Mobile", [D("54.00"), D("0"), D("6.00")]),
    ]
    assert data.month_totals == [D("54.00"), D("105.00"), D("6.00")]
    assert data.total == D("165.00")
    assert [s.total for s in data.series] == [D("105.00"), D("60.00")]

    # Without a currency filter the EUR statement counts too (an account bills in one currency).
    everything = billing_by_month(account_id=account.pk, months=3, today=TODAY)
    assert everything.series[0].values == [D("0"), D("116.00"), D("0")]


def test_billing_by_month_of_an_account_without_statements_is_empty_but_has_its_months(account):
    data = billing_by_month(account_id=account.pk, months=24, today=TODAY)
    assert (len(data.months), data.series, data.total) == (24, [], D(0))
    assert data.month_totals == [D(0)] * 24


def test_billing_by_charge_type_sums_line_amounts_by_type_over_twelve_months(
    account, northwind, citypower, account_factory, django_assert_num_queries
):
    make_statement(
        account=account,
        biller=northwind,
        statement_date=dt.date(2025, 4, 1),  # first day of the window
        lines=[("recurring", "40.00"), ("usage", "2.50"), ("discount", "-5.00"), ("tax", "3.00")],
        usage_detail_purged_at=timezone.now(),
    )
    make_statement(
        account=account,
        biller=citypower,
        statement_date=TODAY,
        lines=[("recurring", "12.00"), ("usage", "93.45"), ("one_time", "25.00"), ("adjustment", "-1.00")],
    )
    # Outside: the day before the window, after today, another account.
    make_statement(
        account=account, biller=citypower, statement_date=dt.date(2025, 3, 31), lines=[("usage", "9")]
    )
    make_statement(
        account=account, biller=citypower, statement_date=dt.date(2026, 3, 16), lines=[("usage", "9")]
    )
    other = account_factory(name="Someone else")
    make_statement(account=other, biller=citypower, statement_date=TODAY, lines=[("usage", "9")])

    with django_assert_num_queries(2):
        data = billing_by_charge_type(account_id=account.pk, months=12, today=TODAY)

    assert (data.start, data.end) == (dt.date(2025, 4, 1), TODAY)
    assert [(t.line_type, t.label, t.amount, t.lines) for t in data.totals] == [
        ("usage", "Usage", D("95.95"), 2),
        ("recurring", "Recurring", D("52.00"), 2),
        ("one_time", "One-time", D("25.00"), 1),
        ("tax", "Tax", D("3.00"), 1),
        ("adjustment", "Adjustment", D("-1.00"), 1),
        ("discount", "Discount", D("-5.00"), 1),
    ]
    assert data.total == D("169.95")
    assert [t.line_type for t in data.positive] == ["usage", "recurring", "one_time", "tax"]
    assert data.purged_statements == 1


def test_billing_by_charge_type_filters_the_currency(account, citypower):
    make_statement(account=account, biller=citypower, statement_date=TODAY, lines=[("usage", "5.00")])
    make_statement(
        account=account, biller=citypower, statement_date=TODAY, lines=[("usage", "7.00")], currency="EUR"
    )
    data = billing_by_charge_type(account_id=account.pk, today=TODAY, currency="USD")
    assert [(t.line_type, t.amount) for t in data.totals] == [("usage", D("5.00"))]
    assert billing_by_charge_type(account_id=account.pk, today=TODAY, currency="JPY").totals == []


def test_usage_by_month_sums_per_type_and_unit_and_leaves_unreported_months_empty(
    account, northwind, citypower, django_assert_num_queries
):
    make_statement(
        account=account,
        biller=northwind,
        statement_date=dt.date(2026, 1, 1),
        usage=[("voice", "min", "100"), ("voice", "min", "20.5"), ("data", "MB", "1024")],
    )
    make_statement(
        account=account,
        biller=citypower,
        statement_date=dt.date(2026, 1, 20),
        usage=[("electricity", "kWh", "640.25")],
    )
    make_statement(
        account=account,
        biller=northwind,
        statement_date=dt.date(2026, 3, 1),
        usage=[("voice", "min", "80"), ("data", "GB", "2")],
    )
    make_statement(
        account=account,
        biller=northwind,
        statement_date=dt.date(2025, 12, 1),
        usage=[("voice", "min", "999")],
    )

    with django_assert_num_queries(1):
        data = usage_by_month(account_id=account.pk, months=3, today=TODAY)

    assert data.months == [dt.date(2026, 1, 1), dt.date(2026, 2, 1), dt.date(2026, 3, 1)]
    # Units are never added together: MB and GB of data are two series.
    assert [(s.usage_type, s.unit, s.values) for s in data.series] == [
        ("data", "GB", [None, None, D("2")]),
        ("data", "MB", [D("1024"), None, None]),
        ("electricity", "kWh", [D("640.25"), None, None]),
        ("voice", "min", [D("120.5"), None, D("80")]),
    ]
    assert [s.total for s in data.series] == [D("2"), D("1024"), D("640.25"), D("200.5")]
    assert data.series[3].key == "voice-min"


def test_chart_selectors_run_the_same_queries_for_one_year_and_five(
    account, account_factory, northwind, django_assert_num_queries
):
    today = timezone.localdate()
    monthly_history(account=account, biller=northwind, months=12, lines=10)
    longer = account_factory(name="Five years")
    monthly_history(account=longer, biller=northwind, months=60, lines=10, prefix="L")

    for acct, months_billed in ((account, 12), (longer, 24)):
        with django_assert_num_queries(1):
            billing = billing_by_month(account_id=acct.pk, today=today)
        with django_assert_num_queries(2):
            types = billing_by_charge_type(account_id=acct.pk, today=today)
        with django_assert_num_queries(1):
            usage = usage_by_month(account_id=acct.pk, today=today)
        # 8 recurring lines of 10.00 and 2 usage lines of 2.50 a month (85.00), tax 0.80 a line (8.00).
        assert billing.total == D("93.00") * months_billed
        assert [(t.line_type, t.amount, t.lines) for t in types.totals] == [
            ("recurring", D("80.00") * 12, 8 * 12),
            ("usage", D("5.00") * 12, 2 * 12),
        ]
        assert [(s.usage_type, s.total) for s in usage.series] == [
            ("data", D(1000) * months_billed),
            ("voice", D(100) * months_billed),
        ]
