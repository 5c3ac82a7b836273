"""The account page frame and the sections that accounts and statements serve into it."""

from __future__ import annotations

import pytest
from django.urls import reverse

from accounts.models import Account, Contact
from statements.models import BalanceType, FinancialTransaction
from statements.services import transaction_post
from tests.pages import fill_parts, whole_page

HTMX = {"HTTP_HX_REQUEST": "true"}
NBSP = "\xa0"


@pytest.fixture
def csr_client(client, csr_user):
    client.force_login(csr_user)
    return client


@pytest.fixture
def family(account_factory, contact_factory, biller_reference_factory, biller_factory):
    """A three-level hierarchy: Holding > Region (non-paying) > Store (non-paying), with contacts and refs."""
    holding = account_factory(name="Holding Group", type=Account.Type.BILLING_AGGREGATOR)
    region = account_factory(name="Region North", type=Account.Type.BUSINESS, parent=holding, is_paying=False)
    store = account_factory(name="Store 12", parent=region, is_paying=False, status=Account.Status.SUSPENDED)
    sibling = account_factory(name="Region South", parent=holding, status=Account.Status.CLOSED)
    contact_factory(
        account=region,
        name="Rita North",
        email="rita@north.test",
        phone="+15550111",
        role=Contact.Role.PRIMARY,
    )
    contact_factory(account=region, name="Bill Copy", email="copy@north.test", phone="", role="billing_copy")
    biller_reference_factory(
        account=region, biller=biller_factory(code="telco", name="Telco One"), external_ref="T-1"
    )
    return {"holding": holding, "region": region, "store": store, "sibling": sibling}


def _page(client, account) -> str:
    """The account page as a browser shows it: its lazy parts loaded (tests/pages.py)."""
    return whole_page(client, reverse("account-detail", args=[account.number]))


def test_unknown_account_is_404(csr_client, db):
    response = csr_client.get(reverse("account-detail", args=["A-NOPE"]))
    assert response.status_code == 404
    assert "We couldn’t find that page" in response.content.decode()


def test_header_shows_identity_type_and_status(csr_client, family):
    store = family["store"]
    body = _page(csr_client, store)
    assert '<h1 class="account-header__title">Store 12</h1>' in body
    assert f'<span class="visually-hidden">Account number </span>{store.number}</span>' in body
    assert '<span class="visually-hidden">Type: </span>Consumer</span>' in body
    assert (
        '<span class="badge badge--status badge--suspended"><span class="visually-hidden">Status: </span>'
        "Suspended</span>" in body
    )
    assert '<span class="badge badge--info">Non-paying</span>' in body


def test_header_shows_hierarchy_path_and_paying_parent(csr_client, family):
    holding, region, store = family["holding"], family["region"], family["store"]
    body = _page(csr_client, store)
    crumbs = body[body.index('aria-label="Account hierarchy"') : body.index("</nav>")]
    assert crumbs.index(f'href="/accounts/{holding.number}/"') < crumbs.index(
        f'href="/accounts/{region.number}/"'
    )
    assert '<span aria-current="page">Store 12</span>' in crumbs
    # Region is non-paying too, so the bill goes up to the holding.
    assert f'Billed to paying parent <a href="/accounts/{holding.number}/">Holding Group</a>' in body


def test_header_lists_children_with_links(csr_client, family):
    holding = family["holding"]
    body = _page(csr_client, holding)
    assert "Child accounts (2)" in body
    assert f'href="/accounts/{family["region"].number}/"' in body
    assert f'href="/accounts/{family["sibling"].number}/"' in body
    assert '<span class="chip__dot chip__dot--closed"' in body
    assert "Billed to paying parent" not in body


def test_children_list_is_capped(csr_client, account_factory, monkeypatch):
    monkeypatch.setattr("accounts.views.CHILDREN_SHOWN", 2)
    parent = account_factory(name="Parent")
    for i in range(3):
        account_factory(name=f"Kid {i}", parent=parent)
    body = _page(csr_client, parent)
    assert "Child accounts (3)" in body
    assert "Showing 2 of 3." in body
    assert body.count('class="chip"') == 2


def test_page_shows_profile_contacts_and_references(csr_client, family):
    region = family["region"]
    profile = region.billing_profile
    body = _page(csr_client, region)
    profile_html = body[body.index('id="section-profile"') : body.index('id="section-contacts"')]
    assert '<h2 class="card__title" id="section-profile-title">Billing profile</h2>' in profile_html
    assert "<dt>Currency</dt><dd>USD</dd>" in profile_html
    assert "<dt>Bill cycle</dt><dd>Monthly, day 1</dd>" in profile_html
    assert profile.address_line1 in profile_html
    contacts_html = body[body.index('id="section-contacts"') : body.index('id="section-references"')]
    assert contacts_html.index("Rita North") < contacts_html.index("Bill Copy")
    assert 'href="mailto:rita@north.test"' in contacts_html
    assert 'href="tel:+15550111"' in contacts_html
    references_html = body[body.index('id="section-references"') :]
    assert "Telco One" in references_html and '<td class="mono">T-1</td>' in references_html


def test_page_without_contacts_or_references(csr_client, account_factory):
    body = _page(csr_client, account_factory(name="Lonely"))
    assert "No contacts." in body
    assert "no external biller references" in body


def test_balance_without_ledger_activity(csr_client, account_factory):
    body = _page(csr_client, account_factory())
    header = body[body.index('id="account-header"') : body.index('class="account-grid"')]
    assert '<div class="tile__value">No ledger activity</div>' in header
    assert "No ledger activity." in body  # the ledger section says so too


def test_balance_and_ledger_show_posted_rows(csr_client, account_factory, biller_factory):
    account = account_factory()
    telco = biller_factory(code="telco", name="Telco One")
    transaction_post(
        account=account, kind=FinancialTransaction.Kind.BILL, amount="1250.50", currency="USD",
        description="March bill", biller=telco, external_id="INV-9",
    )  # fmt: skip
    transaction_post(
        account=account, kind=FinancialTransaction.Kind.PAYMENT, amount="-250.00", currency="USD",
        description="Card payment",
    )  # fmt: skip
    body = _page(csr_client, account)
    header = body[body.index('id="account-header"') : body.index('class="account-grid"')]
    assert '<div class="tile tile--owed" data-balance="owed">' in header
    assert '<div class="tile__value">$1,000.50</div>' in header
    assert "Owed by the customer · 2 entries" in header
    start = body.index('id="section-ledger"')
    ledger = body[start : body.index("<section", start)]  # up to the next section's card
    assert ledger.index("Card payment") < ledger.index("March bill")  # newest first
    assert '<td class="num amount--debit">$1,250.50</td>' in ledger
    assert '<td class="num amount--credit">-$250.00</td>' in ledger
    assert "Telco One" in ledger and "INV-9" in ledger
    assert "This system" in ledger


def test_balance_in_credit_and_wallet(csr_client, account_factory):
    account = account_factory()
    transaction_post(
        account=account, kind=FinancialTransaction.Kind.ADJUSTMENT, amount="-5.00", currency="USD"
    )
    transaction_post(
        account=account, kind=FinancialTransaction.Kind.WALLET_TOPUP, amount="20.00", currency="USD",
        balance_type=BalanceType.WALLET,
    )  # fmt: skip
    header = _page(csr_client, account)
    assert '<div class="tile tile--credit" data-balance="credit">' in header
    assert '<div class="tile__value">-$5.00</div>' in header
    assert '<div class="tile__label">Prepaid wallet</div>' in header
    assert '<div class="tile__value">$20.00</div>' in header


def test_amounts_use_the_profile_locale(csr_client, account_factory):
    account = account_factory()
    profile = account.billing_profile
    profile.locale = "de_DE"
    profile.currency = "EUR"
    profile.save(update_fields=["locale", "currency"])
    transaction_post(account=account, kind=FinancialTransaction.Kind.BILL, amount="1234.5", currency="EUR")
    body = _page(csr_client, account)
    assert f'<div class="tile__value">1.234,50{NBSP}€</div>' in body


def test_unknown_locale_falls_back_to_en_us(csr_client, account_factory):
    account = account_factory()
    account.billing_profile.locale = "xx_YY"
    account.billing_profile.save(update_fields=["locale"])
    transaction_post(account=account, kind=FinancialTransaction.Kind.BILL, amount="7.00", currency="USD")
    assert '<div class="tile__value">$7.00</div>' in _page(csr_client, account)


def test_ledger_is_capped_on_the_page_and_longer_on_its_own_page(csr_client, account_factory, monkeypatch):
    monkeypatch.setattr("statements.views.ledger.LEDGER_ROWS", 2)
    monkeypatch.setattr("statements.views.ledger.LEDGER_ROWS_FULL", 3)
    account = account_factory()
    for i in range(4):
        transaction_post(
            account=account, kind="bill", amount=f"{i + 1}.00", currency="USD", description=f"row{i}"
        )
    body = _page(csr_client, account)
    start = body.index('id="section-ledger"')
    ledger = body[start : body.index("<section", start)]  # up to the next section's card
    assert ledger.count("<tr>") == 3  # header + 2 rows
    assert f'href="/accounts/{account.number}/sections/ledger/">Show the full ledger</a>' in ledger
    full = csr_client.get(reverse("account-section", args=[account.number, "ledger"])).content.decode()
    assert full.count("<tr>") == 4
    assert "Showing the latest 3 entries." in full


def test_account_page_query_count(csr_client, family, django_assert_max_num_queries):
    store = family["store"]
    for i in range(10):
        transaction_post(account=store, kind="bill", amount=f"{i + 1}.00", currency="USD")
    _page(csr_client, store)  # the first view writes the session (the recent accounts); count the next
    # The first response (was 37 with every section in it): session, user, roles and permissions (one query,
    # billing_mgmt.sections.load_roles_and_permissions), the account with its profile, parents, contacts,
    # references and children (one), the balance tiles (one), Past due (two), Account balances (three),
    # Statements (one: the page with its count), Invoices, Payment methods (one each). The sections below
    # come in lazy parts, each one request: tests/accounts/test_page_query_guards.py counts them over five
    # years of history.
    with django_assert_max_num_queries(12):
        response = csr_client.get(reverse("account-detail", args=[store.number]))
    assert response.status_code == 200
    body = fill_parts(csr_client, response.content.decode())
    assert body.count('class="num amount--debit"') == 10


def test_account_page_visits_are_remembered_once(csr_client, account_factory):
    account = account_factory()
    _page(csr_client, account)
    _page(csr_client, account)
    assert csr_client.session["csr_recent_accounts"] == [{"number": account.number, "name": account.name}]


# Section URLs -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("profile", "<dt>Currency</dt><dd>USD</dd>"),
        ("contacts", "Rita North"),
        ("references", '<td class="mono">T-1</td>'),
        ("balance", "No ledger activity"),
        ("ledger", "No ledger activity."),
    ],
)
def test_section_url_returns_a_fragment_for_htmx(csr_client, family, key, expected):
    response = csr_client.get(reverse("account-section", args=[family["region"].number, key]), **HTMX)
    assert response.status_code == 200
    body = response.content.decode()
    assert expected in body
    assert "<html" not in body
    assert 'class="topbar"' not in body


def test_section_url_without_htmx_is_a_page(csr_client, family):
    region = family["region"]
    response = csr_client.get(reverse("account-section", args=[region.number, "contacts"]))
    assert response.status_code == 200
    body = response.content.decode()
    assert "<html" in body
    assert "Rita North" in body
    assert f'href="/accounts/{region.number}/"' in body and "Back to account" in body


def test_section_refresh_sees_new_data(csr_client, account_factory):
    account = account_factory()
    url = reverse("account-section", args=[account.number, "balance"])
    assert "No ledger activity" in csr_client.get(url, **HTMX).content.decode()
    transaction_post(account=account, kind="bill", amount="9.99", currency="USD")
    assert '<div class="tile__value">$9.99</div>' in csr_client.get(url, **HTMX).content.decode()


def test_unknown_section_is_404(csr_client, account_factory):
    account = account_factory()
    response = csr_client.get(reverse("account-section", args=[account.number, "nope"]), **HTMX)
    assert response.status_code == 404


def test_section_of_unknown_account_is_404(csr_client, db):
    response = csr_client.get(reverse("account-section", args=["A-NOPE", "profile"]), **HTMX)
    assert response.status_code == 404


def test_sections_carry_their_refresh_urls(csr_client, family):
    region = family["region"]
    body = _page(csr_client, region)
    for key in ("profile", "contacts", "references", "ledger", "balance"):
        url = f"/accounts/{region.number}/sections/{key}/"
        assert f'hx-get="{url}" hx-trigger="account-changed from:body"' in body
    assert (
        body.index('id="section-ledger"')
        < body.index('id="section-profile"')
        < body.index('id="section-contacts"')
        < body.index('id="section-references"')
    )
