"""The account page's Prepaid wallet section: the bill unit's wallet balance, when it runs out, its latest
wallet rows, and the top-up form (supervisors and billing admins) with its one-time token; who sees what;
bounded queries."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from billing_mgmt.sections import MAIN, account_sections, get_section
from billruns.models import BillingTermScheme, RunDefinition, RunType, WalletEstimate
from billruns.services import billrun_create, wallet_estimates_refresh, wallet_topup
from statements.models import AccountBalance, BalanceType, FinancialTransaction
from statements.services import transaction_post
from tests.billruns import builders as b
from tests.billruns.pages import freeze_today
from tests.billruns.runs_helpers import definition
from tests.factories import AccountFactory
from tests.pages import whole_page

pytestmark = pytest.mark.django_db
HTMX = {"HTTP_HX_REQUEST": "true"}
NBSP = "\xa0"
TODAY = dt.date(2026, 6, 10)
JUNE_1 = dt.date(2026, 6, 1)


def prepaid_plan(fee: str = "30.00", currency: str = "USD"):
    plan = b.plan(name="Prepaid mobile", currency=currency)
    plan.billing_term_scheme = BillingTermScheme.objects.get(code="prepaid")
    plan.save()
    b.recurring(plan, fee)
    return plan


def prepaid_account(*, name: str = "Rivera Prepaid", locale: str = "en_US", currency: str = "USD", **fields):
    """An account with a prepaid subscription from June 1 (monthly, 30.00 recurring), wallet untouched."""
    account = AccountFactory(name=name, **fields)
    profile = account.billing_profile
    profile.locale, profile.currency = locale, currency
    profile.save()
    b.subscription(account, prepaid_plan(currency=currency), JUNE_1, identifier="+15550123000")
    return account


def debit(account, amount: str, day: dt.date, description: str = "Prepaid usage"):
    return transaction_post(
        account=account, kind=FinancialTransaction.Kind.WALLET_DEBIT, amount=f"-{amount}", currency="USD",
        balance_type=BalanceType.WALLET, effective_date=day, description=description,
    )[0]  # fmt: skip


def consumed_wallet(account, debits: int = 10):
    """60.00 topped up on June 1, then ``debits`` daily debits of 1.50 (June 1 on): 10 leave 45.00."""
    wallet_topup(
        account=account, amount=Decimal("60.00"), currency="USD", effective_date=JUNE_1,
        idempotency_key=f"seed-{account.number}",
    )  # fmt: skip
    for i in range(debits):
        debit(account, "1.50", JUNE_1 + dt.timedelta(days=i % 10), description=f"Prepaid usage {i + 1}")


def estimated_by_run(*accounts):
    """The estimation step of a prepaid run (a Draft run stands for it) for these accounts."""
    if not RunDefinition.objects.filter(run_type=RunType.PREPAID, active=True).exists():
        definition(RunType.PREPAID, name="Prepaid daily")
    run = billrun_create(run_type=RunType.PREPAID, bill_as_of_date=TODAY, transaction_date=TODAY)
    estimates = wallet_estimates_refresh(account_ids=[a.pk for a in accounts], today=TODAY, run=run)
    return run, estimates[0]


def _section(client, account, **extra) -> str:
    response = client.get(reverse("account-section", args=[account.number, "wallet"]), **extra)
    assert response.status_code == 200
    return response.content.decode()


def _page(client, account) -> str:
    """The account page as a browser shows it: its lazy parts loaded (tests/pages.py)."""
    return whole_page(client, reverse("account-detail", args=[account.number]))


def _topup(client, account, amount: str, token: str | None = None, **extra):
    if token is None:
        token = _token(_section(client, account, **HTMX))
    return client.post(
        reverse("wallet-topup", args=[account.number]), {"amount": amount, "token": token}, **extra
    )


def _token(body: str) -> str:
    return re.search(r'<input type="hidden" name="token" value="([^"]+)">', body).group(1)


def _wallet_rows(account) -> list[tuple[str, Decimal]]:
    return list(
        FinancialTransaction.objects.filter(account=account, balance_type=BalanceType.WALLET)
        .order_by("id")
        .values_list("kind", "amount")
    )


def _balance(account) -> Decimal:
    return AccountBalance.objects.get(account=account, balance_type=BalanceType.WALLET).amount


@pytest.fixture
def supervisor_client(client, supervisor_user):
    client.force_login(supervisor_user)
    return client


# What the section shows --------------------------------------------------------------------------------


def test_section_is_registered_in_the_main_column_after_subscriptions():
    section = get_section("wallet")
    assert (section.title, section.slot, section.order, section.permission) == (
        "Prepaid wallet",
        MAIN,
        35,
        "billruns.view_walletestimate",
    )
    keys = [s.key for s in account_sections(slot=MAIN)]
    assert keys.index("wallet") == keys.index("subscriptions") + 1
    assert keys.index("wallet") + 1 == keys.index("ledger")


def test_prepaid_account_shows_balance_estimate_and_transactions(csr_client):
    account = prepaid_account()
    consumed_wallet(account)
    run, estimate = estimated_by_run(account)
    # 45.00 left; 15.00 debited in 30 days is 0.50 a day; the 30.00 recurring charge on July 1 leaves 4.50,
    # which lasts 9 more days: below zero on July 11.
    assert (estimate.balance, estimate.daily_consumption, estimate.recurring_per_period) == (
        Decimal("45.00"), Decimal("0.50"), Decimal("30.00"),
    )  # fmt: skip
    assert estimate.runs_out_on == dt.date(2026, 7, 11)

    body = _page(csr_client, account)
    section = body[body.index('id="section-wallet"') : body.index('id="section-ledger"')]
    assert '<h2 class="card__title" id="section-wallet-title">Prepaid wallet</h2>' in section
    assert '<div class="tile__value">$45.00</div>' in section
    assert "Available · 11 entries" in section
    runs_out = re.sub(r">\s+<", "><", section[section.index('<li class="tile" data-runs-out>') :])
    assert runs_out.startswith(
        '<li class="tile" data-runs-out><div class="tile__label">Runs out'
        '<span class="visually-hidden"> on</span></div>'
        '<div class="tile__value"><time datetime="2026-07-11">Jul 11, 2026</time></div>'
        '<div class="tile__note">At the present consumption</div></li>'
    )
    assert (
        '<dt>Average daily consumption</dt>\n      <dd>$0.50 <span class="muted">a day, over the last 30 days'
        in (section)
    )
    assert (
        '<dt>Next recurring charge</dt>\n      <dd>$30.00 on <time datetime="2026-07-01">Jul 1, 2026</time>'
        in section
    )
    assert f'by billing run <span class="mono nowrap">{run.number}</span>' in section
    assert "Estimated from" not in section  # the estimate saw this balance

    # The last 10 wallet rows, newest first: ten debits (the top-up is the 11th, older).
    rows = re.findall(r'<tr data-wallet-tx="([a-z_]+)">', section)
    assert rows == ["wallet_debit"] * 10
    assert (
        '<caption class="visually-hidden">The latest wallet transactions of Rivera Prepaid (up to 10)'
        in section
    )
    first = section[section.index('<tr data-wallet-tx="wallet_debit">') :]
    first = first[: first.index("</tr>")]
    assert '<td class="nowrap">Jun 10, 2026</td>' in first
    assert '<span class="cell-main">Wallet debit</span>' in first
    assert '<td class="hide-sm">Prepaid usage 10</td>' in first
    assert '<td class="num amount--debit">-$1.50</td>' in first
    ledger = reverse("account-section", args=[account.number, "ledger"])
    assert f'Older wallet transactions are in the <a href="{ledger}">ledger of Rivera Prepaid</a>.' in section


def test_a_top_up_row_shows_who_made_it_and_reads_as_money_in(supervisor_client, supervisor_user):
    account = prepaid_account()
    wallet_topup(account=account, amount=Decimal("20.00"), currency="USD", idempotency_key="k1",
                 effective_date=JUNE_1, actor=supervisor_user)  # fmt: skip
    body = _section(supervisor_client, account, **HTMX)
    row = body[body.index('<tr data-wallet-tx="wallet_topup">') :]
    row = row[: row.index("</tr>")]
    assert '<td class="nowrap">Jun 1, 2026</td>' in row
    assert '<span class="cell-main">Wallet top-up</span>' in row
    # The service's description only repeats the kind: left out, the author stays.
    assert '<td class="hide-sm"><span class="cell-sub">by supervisor</span></td>' in row
    assert '<td class="num amount--credit">$20.00</td>' in row
    assert "Older wallet transactions" not in body  # all of them are shown


def test_amounts_follow_the_profiles_locale(csr_client):
    account = prepaid_account(locale="de_DE", currency="EUR")
    wallet_topup(account=account, amount=Decimal("1234.50"), currency="EUR", idempotency_key="k-eur")
    body = _section(csr_client, account, **HTMX)
    assert f'<div class="tile__value">1.234,50{NBSP}€</div>' in body


def test_prepaid_account_without_estimate_or_wallet_rows_yet(csr_client):
    account = prepaid_account()
    body = _section(csr_client, account, **HTMX)
    assert '<div class="tile__value">$0.00</div>' in body
    assert "Nothing left to consume · 0 entries" in body
    assert '<div class="tile__value">Not estimated</div>' in body
    assert "No prepaid run has estimated it yet" in body
    assert "<strong>No wallet transactions yet.</strong>" in body
    assert "<table" not in body


def test_estimate_not_within_a_year_and_a_stale_estimate_says_so(csr_client):
    account = AccountFactory(name="Saver")  # no prepaid subscription, but a wallet balance
    wallet_topup(account=account, amount=Decimal("500.00"), currency="USD", idempotency_key="k-saver")
    wallet_estimates_refresh(account_ids=[account.pk], today=TODAY)
    debit(account, "2.00", TODAY)  # after the estimate
    body = _section(csr_client, account, **HTMX)
    assert '<div class="tile__value">$498.00</div>' in body
    assert '<div class="tile__value">Not within a year</div>' in body
    assert '<div class="tile__note">At the present consumption</div>' in body
    assert '<dt>Next recurring charge</dt>\n      <dd><span class="muted">None due</span></dd>' in body
    assert ", outside a billing run</dd>" in body
    assert "<dt>Estimated from</dt>\n      <dd>a balance of $500.00; the wallet has moved since.</dd>" in body


def test_non_prepaid_account_has_no_wallet(supervisor_client, account_factory):
    account = account_factory(name="Postpaid Co")
    transaction_post(account=account, kind="bill", amount="12.00", currency="USD")
    body = _section(supervisor_client, account, **HTMX)
    assert body.strip() == (
        '<div class="empty" data-wallet="none"><strong>No prepaid wallet.</strong>This account is not billed '
        "in advance: it has no prepaid subscriptions and no wallet balance.</div>"
    )
    assert "<form" not in body
    response = _topup(supervisor_client, account, "10.00", token="x")
    assert response.status_code == 404
    assert not FinancialTransaction.objects.filter(balance_type=BalanceType.WALLET).exists()


def test_non_paying_child_shows_its_paying_parents_wallet(supervisor_client, account_factory):
    parent = AccountFactory(name="Harbor Holdings")
    middle = account_factory(name="Harbor East", parent=parent, is_paying=False)
    child = account_factory(name="Harbor East 2", parent=middle, is_paying=False)
    # The prepaid subscription is the grandchild's; the wallet is the paying parent's.
    b.subscription(child, prepaid_plan(), JUNE_1, identifier="+15550123999")
    parent_body = _section(supervisor_client, parent, **HTMX)
    assert 'data-wallet="' + parent.number + '"' in parent_body
    assert "The wallet of paying parent" not in parent_body

    wallet_topup(account=child, amount=Decimal("25.00"), currency="USD", idempotency_key="k-child")
    body = _section(supervisor_client, child, **HTMX)
    assert (
        f'The wallet of paying parent <a href="/accounts/{parent.number}/">Harbor Holdings</a> '
        f'<span class="mono">{parent.number}</span>: this account’s prepaid charges are debited from it.'
    ) in body
    assert '<div class="tile__value">$25.00</div>' in body
    assert "The latest wallet transactions of Harbor Holdings" in body

    # Topping up from the child's page fills the parent's wallet and comes back to the child's page.
    response = _topup(supervisor_client, child, "5.00")
    assert response.status_code == 302
    assert response.url == f"/accounts/{child.number}/#section-wallet"
    assert _balance(parent) == Decimal("30.00")
    assert not AccountBalance.objects.filter(account__in=[middle, child]).exists()


def test_fragment_for_htmx_and_a_page_without(csr_client):
    account = prepaid_account()
    fragment = _section(csr_client, account, **HTMX)
    assert "<html" not in fragment and "data-wallet-balance" in fragment
    page = _section(csr_client, account)
    assert page.startswith("<!doctype html>")
    assert '<h1 class="card__title" id="section-title">Prepaid wallet' in page


def test_hidden_without_the_permission(csr_client):
    from django.contrib.auth.models import Group, Permission

    from billing_mgmt import roles

    account = prepaid_account()
    Group.objects.get(name=roles.CSR).permissions.remove(
        Permission.objects.get(content_type__app_label="billruns", codename="view_walletestimate")
    )
    assert 'id="section-wallet"' not in _page(csr_client, account)
    assert csr_client.get(reverse("account-section", args=[account.number, "wallet"])).status_code == 404


# Who may top up ----------------------------------------------------------------------------------------


def test_csr_sees_no_form_and_gets_403_when_posting(csr_client):
    account = prepaid_account()
    body = _section(csr_client, account, **HTMX)
    assert "<form" not in body and "Top up" not in body
    url = reverse("wallet-topup", args=[account.number])
    assert csr_client.post(url, {"amount": "10.00", "token": "x"}, **HTMX).status_code == 403
    assert csr_client.post(url, {"amount": "10.00", "token": "x"}).status_code == 403
    assert not FinancialTransaction.objects.filter(balance_type=BalanceType.WALLET).exists()


def test_anonymous_goes_to_log_in_and_customers_get_403(client, user_factory):
    from billing_mgmt import roles

    account = prepaid_account()
    url = reverse("wallet-topup", args=[account.number])
    response = client.post(url, {"amount": "10.00"})
    assert (response.status_code, response.url) == (302, f"/login/?next={url}")
    client.force_login(user_factory(username="customer", role=roles.CUSTOMER))
    assert client.post(url, {"amount": "10.00"}).status_code == 403


def test_get_is_not_allowed(supervisor_client):
    account = prepaid_account()
    assert supervisor_client.get(reverse("wallet-topup", args=[account.number])).status_code == 405


def test_supervisor_sees_the_form(supervisor_client):
    account = prepaid_account()
    body = _section(supervisor_client, account, **HTMX)
    url = reverse("wallet-topup", args=[account.number])
    assert f'method="post" action="{url}"' in body
    assert f'hx-post="{url}" hx-target="#section-wallet-body" hx-swap="innerHTML"' in body
    assert '<label for="wallet-amount">Amount in USD</label>' in body
    assert 'aria-describedby="wallet-amount-help"' in body
    assert "For example 20.00." in body
    # The section's own page without htmx is a plain form (it lands back on the account page).
    assert "hx-post" not in _section(supervisor_client, account)


def test_supervisor_tops_up_with_htmx(supervisor_client, supervisor_user, monkeypatch):
    freeze_today(monkeypatch, TODAY)
    account = prepaid_account()
    consumed_wallet(account)
    estimated_by_run(account)
    response = _topup(supervisor_client, account, "20.00", **HTMX)
    # No swap: every section (balance, ledger, this one) reloads on the event.
    assert response.status_code == 204
    assert response["HX-Trigger"] == "account-changed"
    assert _balance(account) == Decimal("65.00")
    row = FinancialTransaction.objects.filter(account=account, kind="wallet_topup").latest("id")
    assert (row.amount, row.created_by, row.description, row.effective_date) == (
        Decimal("20.00"), supervisor_user, "Wallet top-up", TODAY,
    )  # fmt: skip
    assert row.idempotency_key.startswith("wallet-topup:")
    # The estimate follows the new balance: 65.00 - 0.50 a day - 30.00 on July 1 lasts to July 31 (below zero
    # on August 1, the next recurring charge).
    estimate = WalletEstimate.objects.get(account=account)
    assert (estimate.balance, estimate.run, estimate.runs_out_on) == (
        Decimal("65.00"),
        None,
        dt.date(2026, 8, 1),
    )

    body = _section(supervisor_client, account, **HTMX)  # the reload
    assert (
        '<p class="alert alert--info" role="status" tabindex="-1" autofocus data-topup-notice="added">\n'
        "      Added $20.00 to the wallet.\n    </p>"
    ) in body
    assert '<div class="tile__value">$65.00</div>' in body
    assert '<time datetime="2026-08-01">Aug 1, 2026</time>' in body
    assert ", outside a billing run</dd>" in body
    assert "Added $20.00" not in _section(supervisor_client, account, **HTMX)  # said once


def test_top_up_without_javascript_redirects_to_the_account_page(client, billing_admin_user):
    client.force_login(billing_admin_user)
    account = prepaid_account()
    response = _topup(client, account, "7.25")
    assert response.status_code == 302
    assert response.url == f"/accounts/{account.number}/#section-wallet"
    body = client.get(response.url).content.decode()
    assert "Added $7.25 to the wallet." in body
    assert _wallet_rows(account) == [("wallet_topup", Decimal("7.25"))]


def test_double_submit_makes_one_top_up(supervisor_client):
    account = prepaid_account()
    token = _token(_section(supervisor_client, account, **HTMX))
    first = _topup(supervisor_client, account, "15.00", token=token, **HTMX)
    second = _topup(supervisor_client, account, "15.00", token=token, **HTMX)
    assert (first.status_code, second.status_code) == (204, 204)
    assert _wallet_rows(account) == [("wallet_topup", Decimal("15.00"))]
    assert _balance(account) == Decimal("15.00")
    body = _section(supervisor_client, account, **HTMX)
    assert "This top-up of $15.00 was already recorded: nothing more was added." in body
    assert _token(body) != token  # the next top-up gets a fresh form


def test_the_same_form_for_another_amount_is_refused(supervisor_client):
    account = prepaid_account()
    token = _token(_section(supervisor_client, account, **HTMX))
    _topup(supervisor_client, account, "15.00", token=token, **HTMX)
    response = _topup(supervisor_client, account, "16.00", token=token, **HTMX)
    assert response.status_code == 200  # htmx swaps only 2xx: the refusal is shown in place
    body = response.content.decode()
    assert (
        '<p class="alert alert--error" role="alert" data-topup-error>This form was already used to add '
        "$15.00. Nothing more was added: enter the amount again.</p>"
    ) in body
    assert _token(body) != token
    assert _wallet_rows(account) == [("wallet_topup", Decimal("15.00"))]
    assert _topup(supervisor_client, account, "16.00", token=token).status_code == 409  # without htmx


def test_a_token_for_another_account_or_forged_is_refused(supervisor_client):
    account, other = prepaid_account(name="One"), prepaid_account(name="Two")
    other_token = _token(_section(supervisor_client, other, **HTMX))
    for token in (other_token, "forged", ""):
        response = _topup(supervisor_client, account, "5.00", token=token)
        assert response.status_code == 400
        body = response.content.decode()
        assert "data-topup-error" in body
        assert _token(body) != token
    assert not FinancialTransaction.objects.filter(balance_type=BalanceType.WALLET).exists()


@pytest.mark.parametrize(
    ("amount", "message"),
    [
        ("", "Enter the amount to add to the wallet."),
        ("   ", "Enter the amount to add to the wallet."),
        ("0", "The amount must be more than zero."),
        ("0.00", "The amount must be more than zero."),
        ("-5.00", "The amount must be more than zero."),
        ("10.005", "USD amounts have at most 2 decimal places."),
        ("ten", "Enter the amount as a number, e.g. 20.00."),
        ("1e3", "Enter the amount as a number, e.g. 20.00."),
        ("1,000.00", "Enter the amount as a number, e.g. 20.00."),
        ("NaN", "Enter the amount as a number, e.g. 20.00."),
        ("1000000000000000", "The amount is too large."),
    ],
)
def test_bad_amounts_are_refused_with_a_message_and_nothing_stored(supervisor_client, amount, message):
    account = prepaid_account()
    token = _token(_section(supervisor_client, account, **HTMX))
    response = _topup(supervisor_client, account, amount, token=token, **HTMX)
    assert response.status_code == 200
    body = response.content.decode()
    error = '<p class="field__help text-overdue" id="wallet-amount-error" role="alert" data-topup-error>'
    assert f"{error}{message}</p>" in body
    assert 'aria-invalid="true" autofocus' in body
    assert 'aria-describedby="wallet-amount-error wallet-amount-help"' in body
    assert _token(body) == token  # nothing was done with it: the corrected form may use it
    assert not FinancialTransaction.objects.filter(balance_type=BalanceType.WALLET).exists()
    assert not WalletEstimate.objects.exists()

    # Without JavaScript: a page of its own with the form and its error, 400.
    page = _topup(supervisor_client, account, amount, token=token)
    assert page.status_code == 400
    assert page.content.decode().startswith("<!doctype html>")
    assert message in page.content.decode()


def test_decimal_places_follow_the_currency(supervisor_client):
    account = prepaid_account(currency="JPY", locale="ja_JP")
    body = _section(supervisor_client, account, **HTMX)
    assert "For example 20." in body
    response = _topup(supervisor_client, account, "100.5", **HTMX)
    assert "JPY amounts have no decimals." in response.content.decode()
    assert _topup(supervisor_client, account, "1000", **HTMX).status_code == 204
    assert _balance(account) == Decimal("1000")


# Queries -----------------------------------------------------------------------------------------------


def _queries(client, account) -> int:
    with CaptureQueriesContext(connection) as queries:
        _section(client, account, **HTMX)
    return len(queries.captured_queries)


def test_queries_do_not_grow_with_transactions(supervisor_client, django_assert_max_num_queries):
    few, many = prepaid_account(name="Few"), prepaid_account(name="Many")
    consumed_wallet(few, debits=2)  # 3 rows
    consumed_wallet(many, debits=29)  # 30 rows
    estimated_by_run(few, many)
    _section(supervisor_client, few, **HTMX)  # the first request writes the session
    # The frame: session, user, groups, the account with its contacts and references (3), permissions (2).
    # The section: the unit with its wallet balance, estimate and run and whether it is prepaid (1), its last
    # wallet rows with who made them (1).
    with django_assert_max_num_queries(10):
        _section(supervisor_client, many, **HTMX)
    assert _queries(supervisor_client, few) == _queries(supervisor_client, many)


def test_an_account_without_a_wallet_costs_one_query(csr_client, account_factory):
    from billruns.selectors import account_wallet

    parent = account_factory()
    child = account_factory(parent=parent, is_paying=False)
    grandchild = account_factory(parent=child, is_paying=False)
    account = type(grandchild).objects.select_related("parent__parent").get(pk=grandchild.pk)
    with CaptureQueriesContext(connection) as queries:
        assert account_wallet(account=account) is None
    assert len(queries.captured_queries) == 1


@pytest.mark.django_db(transaction=True)
def test_two_submits_at_once_make_one_top_up(supervisor_user):
    """Two requests with one form's token race on the ledger's unique idempotency key: one row, one balance
    movement, and both answered as a success."""
    from django.test import Client

    from tests.concurrency import run_in_threads

    account = prepaid_account()
    client = Client()
    client.force_login(supervisor_user)
    token = _token(_section(client, account, **HTMX))

    clients = [Client(), Client()]
    for each in clients:
        each.force_login(supervisor_user)  # before the race: the threads only post

    def submit(i: int) -> int:
        return _topup(clients[i], account, "12.00", token=token, **HTMX).status_code

    results, errors = run_in_threads(submit, 2)
    assert errors == []
    assert sorted(results) == [204, 204]
    assert _wallet_rows(account) == [("wallet_topup", Decimal("12.00"))]
    balance = AccountBalance.objects.get(account=account, balance_type=BalanceType.WALLET)
    assert (balance.amount, balance.transaction_count) == (Decimal("12.00"), 1)
