"""Billing admins' reports: billed amounts by month, biller and charge type; reconciliation differences."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from accounts.models import BillingProfile
from statements.models import DataRetention, Statement
from statements.selectors import billed_amounts, reconciliation_report
from statements.services import ingest_records, usage_detail_purge
from tests.factories import statement_record

pytestmark = pytest.mark.django_db

BILLED_URL = "admin:statements_report_billed"
RECONCILIATION_URL = "admin:statements_report_reconciliation"
RANGE = {"date_from": "2026-01-01", "date_to": "2026-02-28"}


def _ingest(biller, *records):
    results = ingest_records(biller=biller, records=list(records))
    assert [r.status for r in results] == ["accepted"] * len(records), [r.as_dict() for r in results]
    return results


def _statement(ref: str, external_id: str, day: str, lines: list[dict] | None = None, **more) -> dict:
    date = dt.date.fromisoformat(day)
    return statement_record(
        ref,
        external_id,
        statement_date=day,
        period_start=date.replace(day=1).isoformat(),
        period_end=day,
        due_date=(date + dt.timedelta(days=14)).isoformat(),
        lines=lines,
        **more,
    )


@pytest.fixture
def world(biller_factory, account_factory, biller_reference_factory):
    """Two billers, an account in USD at both and one in EUR at the first; statements in Jan-Mar 2026."""
    alpha = biller_factory(code="alpha", name="Alpha Telecom")
    beta = biller_factory(code="beta", name="Beta Energy")
    usd = account_factory(name="Dollar Co")
    eur = account_factory(name="Euro GmbH")
    BillingProfile.objects.filter(account=eur).update(currency="EUR")
    biller_reference_factory(account=usd, biller=alpha, external_ref="A-USD")
    biller_reference_factory(account=eur, biller=alpha, external_ref="A-EUR")
    biller_reference_factory(account=usd, biller=beta, external_ref="B-USD")
    _ingest(
        alpha,
        # Default lines: recurring 40.00, usage 2.50, discount -5.00; line taxes 3.00.
        _statement("A-USD", "A-USD-01", "2026-01-31"),
        _statement(
            "A-USD",
            "A-USD-02",
            "2026-02-28",
            lines=[
                {"type": "recurring", "product": "Plan", "amount": "40.00"},
                {"type": "one_time", "product": "SIM", "amount": "10.00"},
                {"type": "tax", "product": "VAT", "amount": "4.00"},
            ],
        ),
        _statement(
            "A-EUR",
            "A-EUR-01",
            "2026-01-15",
            currency="EUR",
            lines=[
                {"type": "recurring", "product": "Plan", "amount": "20.00"},
                {"type": "usage", "product": "Calls", "amount": "1.25"},
            ],
        ),
    )
    _ingest(
        beta,
        _statement(
            "B-USD",
            "B-USD-01",
            "2026-01-20",
            lines=[
                {"type": "recurring", "product": "Standing charge", "amount": "15.00"},
                {"type": "tax", "product": "VAT", "amount": "1.50"},
            ],
        ),
        _statement("B-USD", "B-USD-03", "2026-03-05", lines=[{"type": "recurring", "amount": "99.00"}]),
    )
    return {"alpha": alpha, "beta": beta, "usd": usd, "eur": eur}


def _flat(item) -> tuple:
    return (
        item.currency,
        item.statements,
        {k: str(v) for k, v in item.line_amounts.items()},
        str(item.new_charges),
        str(item.taxes),
        str(item.billed),
    )


# --- billed amounts: the numbers ---------------------------------------------------------------------------


def test_billed_amounts_by_month_biller_and_line_type(world):
    report = billed_amounts(date_from=dt.date(2026, 1, 1), date_to=dt.date(2026, 2, 28))

    assert [(f"{r.month:%Y-%m}", r.biller_code, *_flat(r)) for r in report.rows] == [
        (
            "2026-01", "alpha", "EUR", 1, {"recurring": "20.0000", "usage": "1.2500"},
            "21.2500", "0.0000", "21.2500",
        ),
        (
            "2026-01", "alpha", "USD", 1, {"recurring": "40.0000", "usage": "2.5000", "discount": "-5.0000"},
            "37.5000", "3.0000", "40.5000",
        ),
        (
            "2026-01", "beta", "USD", 1, {"recurring": "15.0000", "tax": "1.5000"},
            "15.0000", "1.5000", "16.5000",
        ),
        (
            "2026-02", "alpha", "USD", 1, {"recurring": "40.0000", "one_time": "10.0000", "tax": "4.0000"},
            "50.0000", "4.0000", "54.0000",
        ),
    ]  # fmt: skip
    # Per currency, never across currencies.
    assert [_flat(t) for t in report.totals] == [
        ("EUR", 1, {"recurring": "20.0000", "usage": "1.2500"}, "21.2500", "0.0000", "21.2500"),
        (
            "USD", 3,
            {
                "recurring": "95.0000", "usage": "2.5000", "discount": "-5.0000", "one_time": "10.0000",
                "tax": "5.5000",
            },
            "102.5000", "8.5000", "111.0000",
        ),
    ]  # fmt: skip


def test_billed_amounts_filters_by_biller_and_range(world):
    beta_only = billed_amounts(biller_id=world["beta"].pk)
    assert [(f"{r.month:%Y-%m}", r.biller_code, str(r.billed)) for r in beta_only.rows] == [
        ("2026-01", "beta", "16.5000"),
        ("2026-03", "beta", "99.0000"),
    ]
    march = billed_amounts(date_from=dt.date(2026, 3, 1), date_to=dt.date(2026, 3, 31))
    assert [(r.biller_code, r.statements) for r in march.rows] == [("beta", 1)]
    assert billed_amounts(date_from=dt.date(2027, 1, 1)).rows == []


def test_billed_amounts_take_a_fixed_number_of_queries(world, django_assert_num_queries):
    _ingest(world["alpha"], *(_statement("A-USD", f"X-{m}", f"2025-{m:02d}-28") for m in range(1, 13)))
    with django_assert_num_queries(4):
        report = billed_amounts()
    assert len(report.rows) == 17


def test_purged_usage_is_counted_and_totals_stay(world):
    DataRetention.objects.create(usage_detail_days=30)
    usage_detail_purge(today=dt.date(2026, 3, 15))  # removes the usage lines of January's statements

    report = billed_amounts(date_from=dt.date(2026, 1, 1), date_to=dt.date(2026, 1, 31))
    alpha_usd = next(r for r in report.rows if r.biller_code == "alpha" and r.currency == "USD")
    assert alpha_usd.usage_detail_purged == 1
    assert alpha_usd.line_amount("usage") == 0
    assert alpha_usd.new_charges == Decimal("37.50")  # the statement's total is kept


# --- billed amounts: the page and the CSV ------------------------------------------------------------------


def test_billed_page_shows_the_table(admin_client, world):
    response = admin_client.get(reverse(BILLED_URL), RANGE)

    assert response.status_code == 200
    html = response.content.decode()
    assert response.context["rows"][1]["lines"] == ["40.00", "2.50", "0.00", "-5.00", "0.00", "0.00", "0.00"]
    assert [t["billed"] for t in response.context["totals"]] == ["21.25", "111.00"]
    assert "Alpha Telecom" in html and "Beta Energy" in html
    assert (
        "format=csv" in response.context["csv_url"] and "date_from=2026-01-01" in response.context["csv_url"]
    )


def test_billed_page_defaults_to_the_last_twelve_months(admin_client, world):
    response = admin_client.get(reverse(BILLED_URL))
    assert response.status_code == 200
    form = response.context["form"]
    assert form.cleaned_data["date_to"] == timezone.localdate()
    assert (form.cleaned_data["date_to"] - form.cleaned_data["date_from"]).days < 366


def test_billed_csv(admin_client, world):
    response = admin_client.get(reverse(BILLED_URL), {**RANGE, "format": "csv"})

    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert (
        response["Content-Disposition"]
        == 'attachment; filename="billed-amounts-2026-01-01-to-2026-02-28.csv"'
    )
    assert b"".join(response.streaming_content).decode().splitlines() == [
        "month,biller_code,biller_name,currency,statements,usage_detail_purged,recurring,usage,one_time,"
        "discount,tax,adjustment,other,new_charges,taxes,billed",
        "2026-01,alpha,Alpha Telecom,EUR,1,0,20.00,1.25,0.00,0.00,0.00,0.00,0.00,21.25,0.00,21.25",
        "2026-01,alpha,Alpha Telecom,USD,1,0,40.00,2.50,0.00,-5.00,0.00,0.00,0.00,37.50,3.00,40.50",
        "2026-01,beta,Beta Energy,USD,1,0,15.00,0.00,0.00,0.00,1.50,0.00,0.00,15.00,1.50,16.50",
        "2026-02,alpha,Alpha Telecom,USD,1,0,40.00,0.00,10.00,0.00,4.00,0.00,0.00,50.00,4.00,54.00",
    ]


def test_billed_csv_for_one_biller(admin_client, world):
    response = admin_client.get(reverse(BILLED_URL), {"biller": world["beta"].pk, "format": "csv"})

    assert response["Content-Disposition"] == 'attachment; filename="billed-amounts-start-to-end-beta.csv"'
    rows = b"".join(response.streaming_content).decode().splitlines()
    assert [row.split(",")[:4] for row in rows[1:]] == [
        ["2026-01", "beta", "Beta Energy", "USD"],
        ["2026-03", "beta", "Beta Energy", "USD"],
    ]


@pytest.mark.parametrize(
    "params, field",
    [
        ({"date_from": "2026-03-01", "date_to": "2026-01-01"}, "date_to"),
        ({"date_from": "not-a-date"}, "date_from"),
        ({"biller": "999999"}, "biller"),
    ],
)
@pytest.mark.parametrize("csv", [False, True])
def test_billed_report_refuses_bad_filters(admin_client, world, params, field, csv):
    response = admin_client.get(reverse(BILLED_URL), {**params, **({"format": "csv"} if csv else {})})

    assert response.status_code == 400
    assert field in response.context["form"].errors
    assert response["Content-Type"].startswith("text/html")


# --- reconciliation ---------------------------------------------------------------------------------------


def _balance(ref: str, as_of: str, amount: str, currency: str = "USD") -> dict:
    return {"type": "balance", "account": ref, "as_of": as_of, "amount": amount, "currency": currency}


@pytest.fixture
def differences(world):
    # Ledger from alpha for the USD account: 40.50 + 54.00 = 94.50; the biller says 100.00.
    _ingest(world["alpha"], _balance("A-USD", "2026-03-01T00:00:00Z", "100.00"))
    # The EUR account agrees: not listed.
    _ingest(world["alpha"], _balance("A-EUR", "2026-03-01T00:00:00Z", "21.25", "EUR"))
    # Beta as of 1 March: only January's 16.50 counts (March's statement is later); the biller says 10.00.
    _ingest(world["beta"], _balance("B-USD", "2026-03-01T12:00:00Z", "10.00"))
    return world


def test_reconciliation_report_rows(differences):
    rows = reconciliation_report()

    assert [
        (
            r.account_number,
            r.biller_code,
            r.currency,
            str(r.biller_amount),
            str(r.ledger_amount),
            str(r.difference),
        )
        for r in rows
    ] == [
        (differences["usd"].number, "alpha", "USD", "100.0000", "94.5000", "5.5000"),
        (differences["usd"].number, "beta", "USD", "10.0000", "16.5000", "-6.5000"),
    ]
    assert [r.biller_code for r in reconciliation_report(biller_id=differences["beta"].pk)] == ["beta"]


def test_reconciliation_page_links_to_the_account(admin_client, differences):
    response = admin_client.get(reverse(RECONCILIATION_URL))

    assert response.status_code == 200
    number = differences["usd"].number
    html = response.content.decode()
    assert f'<a href="/accounts/{number}/">{number}</a>' in html
    assert [(r["biller"], r["difference"]) for r in response.context["rows"]] == [
        ("Alpha Telecom", "5.50"),
        ("Beta Energy", "-6.50"),
    ]
    assert response.context["truncated"] is False


def test_reconciliation_page_caps_its_rows(admin_client, differences, monkeypatch):
    monkeypatch.setattr("statements.admin.reports.RECONCILIATION_PAGE_ROWS", 1)
    response = admin_client.get(reverse(RECONCILIATION_URL))
    assert len(response.context["rows"]) == 1
    assert response.context["truncated"] is True
    assert "the CSV has them" in response.content.decode()


def test_reconciliation_csv(admin_client, differences):
    response = admin_client.get(reverse(RECONCILIATION_URL), {"format": "csv"})

    assert response.streaming
    assert response["Content-Disposition"].startswith('attachment; filename="reconciliation-differences-')
    number = differences["usd"].number
    assert b"".join(response.streaming_content).decode().splitlines() == [
        "account_number,account_name,biller_code,biller_name,currency,as_of,biller_balance,ledger_balance,"
        "difference",
        f"{number},Dollar Co,alpha,Alpha Telecom,USD,2026-03-01T00:00:00+00:00,100.00,94.50,5.50",
        f"{number},Dollar Co,beta,Beta Energy,USD,2026-03-01T12:00:00+00:00,10.00,16.50,-6.50",
    ]


def test_reconciliation_report_refuses_an_unknown_biller(admin_client, differences):
    response = admin_client.get(reverse(RECONCILIATION_URL), {"biller": "nope"})
    assert response.status_code == 400
    assert "biller" in response.context["form"].errors


def test_no_differences(admin_client, world):
    response = admin_client.get(reverse(RECONCILIATION_URL))
    assert response.context["rows"] == []
    assert "No differences" in response.content.decode()


# --- who may see them -------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", [BILLED_URL, RECONCILIATION_URL])
@pytest.mark.parametrize("fmt", [{}, {"format": "csv"}])
def test_csrs_get_403(client, csr_user, world, url, fmt):
    client.force_login(csr_user)
    assert client.get(reverse(url), fmt).status_code == 403
    csr_user.is_staff = True  # even with access to Django admin
    csr_user.save()
    assert client.get(reverse(url), fmt).status_code == 403


@pytest.mark.parametrize("url", [BILLED_URL, RECONCILIATION_URL])
def test_anonymous_users_are_sent_to_the_admin_login(client, url):
    response = client.get(reverse(url))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


def test_superusers_may_see_reports(client, user_factory, world):
    root = user_factory(username="root")
    root.is_staff = root.is_superuser = True
    root.save()
    client.force_login(root)
    assert client.get(reverse(BILLED_URL), RANGE).status_code == 200
    assert client.get(reverse(RECONCILIATION_URL)).status_code == 200


def test_reports_are_linked_from_the_admin_index_and_the_statement_list(admin_client, world):
    for page in (reverse("admin:index"), reverse("admin:statements_statement_changelist")):
        html = admin_client.get(page).content.decode()
        assert f'href="{reverse(BILLED_URL)}"' in html, page
        assert f'href="{reverse(RECONCILIATION_URL)}"' in html, page


def test_no_report_links_for_staff_without_the_role(client, user_factory):
    clerk = user_factory(username="clerk")
    clerk.is_staff = True
    clerk.save()
    client.force_login(clerk)
    html = client.get(reverse("admin:index")).content.decode()
    assert reverse(BILLED_URL) not in html
    assert Statement.objects.count() == 0
