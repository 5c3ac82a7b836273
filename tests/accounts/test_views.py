"""CSR pages: access rules, login, home and account search."""

from __future__ import annotations

import pytest
from django.urls import reverse

from accounts.models import Account, Contact
from billing_mgmt import roles

HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def customer_user(user_factory):
    return user_factory(username="customer", role=roles.CUSTOMER)


@pytest.fixture
def csr_client(client, csr_user):
    client.force_login(csr_user)
    return client


# Access -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("url_name", ["csr-home", "account-search"])
def test_anonymous_is_sent_to_login(client, db, url_name):
    url = reverse(url_name)
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"] == f"{reverse('login')}?next={url}"


def test_anonymous_account_page_is_sent_to_login(client, account_factory):
    account = account_factory()
    url = reverse("account-detail", args=[account.number])
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"] == f"{reverse('login')}?next={url}"


def test_anonymous_htmx_request_redirects_the_whole_page(client, account_factory):
    account = account_factory()
    page = reverse("account-detail", args=[account.number])
    response = client.get(
        reverse("account-section", args=[account.number, "contacts"]),
        HTTP_HX_CURRENT_URL=f"http://testserver{page}",
        **HTMX,
    )
    assert response.status_code == 200
    assert response["HX-Redirect"] == f"{reverse('login')}?next={page}"
    assert response.content == b""


def test_customer_gets_403_on_csr_pages(client, customer_user):
    client.force_login(customer_user)
    response = client.get(reverse("account-search"), {"q": "x"})
    assert response.status_code == 403
    assert "You don’t have access to this page" in response.content.decode()


def test_a_customer_at_the_csr_home_goes_to_the_portal(client, customer_user):
    client.force_login(customer_user)
    response = client.get(reverse("csr-home"))
    assert (response.status_code, response["Location"]) == (302, reverse("portal:home"))


def test_customer_cannot_open_account_page_or_section(client, customer_user, account_factory):
    account = account_factory()
    client.force_login(customer_user)
    assert client.get(reverse("account-detail", args=[account.number])).status_code == 403
    assert client.get(reverse("account-section", args=[account.number, "profile"]), **HTMX).status_code == 403


def test_user_without_any_role_gets_403(client, user_factory):
    client.force_login(user_factory(username="nobody"))
    assert client.get(reverse("csr-home")).status_code == 403


def test_inactive_staff_member_is_logged_out(client, user_factory):
    user = user_factory(username="gone", role=roles.CSR)
    client.force_login(user)
    user.is_active = False
    user.save(update_fields=["is_active"])
    response = client.get(reverse("csr-home"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


@pytest.mark.parametrize("role", [roles.CSR, roles.SUPERVISOR, roles.BILLING_ADMIN])
def test_staff_roles_see_home(client, user_factory, role):
    client.force_login(user_factory(username=f"staff-{role}", role=role))
    response = client.get(reverse("csr-home"))
    assert response.status_code == 200
    body = response.content.decode()
    assert "Find an account" in body
    assert f'<span class="visually-hidden">Role: </span>{role}</span>' in body


def test_superuser_sees_home(client, user_factory):
    admin = user_factory(username="root", is_superuser=True)
    client.force_login(admin)
    response = client.get(reverse("csr-home"))
    assert response.status_code == 200
    assert '<span class="visually-hidden">Role: </span>Superuser</span>' in response.content.decode()


# Login and logout ---------------------------------------------------------------------------------


def test_login_page_renders_our_form(client, db):
    response = client.get(reverse("login"))
    assert response.status_code == 200
    body = response.content.decode()
    assert '<h1 class="auth__title">Log in</h1>' in body
    assert 'autocomplete="current-password"' in body


def test_login_then_home(client, csr_user):
    response = client.post(reverse("login"), {"username": "csr", "password": "pass-Word-123"})
    assert response.status_code == 302
    assert response["Location"] == reverse("csr-home")
    assert client.get(reverse("csr-home")).status_code == 200


def test_login_follows_next(client, csr_user, account_factory):
    account = account_factory()
    target = reverse("account-detail", args=[account.number])
    response = client.post(reverse("login"), {"username": "csr", "password": "pass-Word-123", "next": target})
    assert response.status_code == 302
    assert response["Location"] == target


def test_wrong_password_shows_error_and_stays_anonymous(client, csr_user):
    response = client.post(reverse("login"), {"username": "csr", "password": "wrong"})
    assert response.status_code == 200
    assert "That username and password do not match." in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_logout_is_a_post(csr_client):
    response = csr_client.post(reverse("logout"))
    assert response.status_code == 302
    assert response["Location"] == reverse("login")
    assert "_auth_user_id" not in csr_client.session
    assert csr_client.get(reverse("csr-home")).status_code == 302


# Search -------------------------------------------------------------------------------------------


@pytest.fixture
def searchable(account_factory, contact_factory, biller_reference_factory, biller_factory):
    """Two accounts that differ in every searchable key, plus a non-paying child of the first."""
    acme = account_factory(name="Acme Widgets", type=Account.Type.BUSINESS)
    contact_factory(
        account=acme, name="Ada Lovelace", email="ada@acme.test", phone="+15550100", role=Contact.Role.PRIMARY
    )
    biller_reference_factory(account=acme, biller=biller_factory(code="telco"), external_ref="TEL-778899")
    other = account_factory(name="Zenith Foods", status=Account.Status.SUSPENDED)
    contact_factory(account=other, name="Zed Zenith", email="zed@zenith.test", phone="+44 20 7946 0000")
    child = account_factory(name="Acme Widgets East", parent=acme, is_paying=False)
    return {"acme": acme, "other": other, "child": child}


def _numbers_in(body: str, accounts: list[Account]) -> list[str]:
    return [a.number for a in accounts if f">{a.number}</a>" in body]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("Zenith", ["other"]),  # name
        ("acme widgets", ["acme", "child"]),  # name, case-insensitive
        ("ada@acme.test", ["acme"]),  # contact e-mail
        ("ADA@ACME.TEST", ["acme"]),
        ("555 0100", ["acme"]),  # contact phone: the query's digits
        ("7946", ["other"]),
        ("tel-778899", ["acme"]),  # reference at a biller
    ],
)
def test_htmx_search_by_each_key(csr_client, searchable, query, expected):
    response = csr_client.get(reverse("account-search"), {"q": query}, **HTMX)
    assert response.status_code == 200
    body = response.content.decode()
    assert "<html" not in body  # a fragment for the live search
    found = _numbers_in(body, list(searchable.values()))
    assert sorted(found) == sorted(searchable[key].number for key in expected)


def test_htmx_search_by_number(csr_client, searchable):
    number = searchable["other"].number
    response = csr_client.get(reverse("account-search"), {"q": number.lower()}, **HTMX)
    assert _numbers_in(response.content.decode(), list(searchable.values())) == [number]


def test_search_results_table_columns(csr_client, searchable):
    response = csr_client.get(reverse("account-search"), {"q": "Acme"}, **HTMX)
    body = response.content.decode()
    assert "2 accounts found" in body
    for header in ("Account", "Name", "Type", "Status", "Paying parent", "Primary contact"):
        assert '<th scope="col"' in body and f">{header}</th>" in body
    acme, child = searchable["acme"], searchable["child"]
    assert "Business" in body
    assert '<span class="badge badge--status badge--active">Active</span>' in body
    assert "Ada Lovelace" in body and "ada@acme.test" in body
    # The child is non-paying: its paying parent is Acme.
    assert f'<a class="mono" href="/accounts/{acme.number}/">{acme.number}</a>' in body
    assert body.count("Pays its own bills") == 1
    assert f'href="/accounts/{child.number}/"' in body


def test_plain_get_search_shows_the_full_page(csr_client, searchable):
    response = csr_client.get(reverse("account-search"), {"q": "Acme"})
    assert response.status_code == 200
    body = response.content.decode()
    assert "<html" in body
    assert 'id="search-results" aria-live="polite"' in body
    assert _numbers_in(body, list(searchable.values())) == [
        searchable["acme"].number,
        searchable["child"].number,
    ]


def test_plain_get_search_with_one_hit_opens_the_account(csr_client, searchable):
    response = csr_client.get(reverse("account-search"), {"q": "zed@zenith.test"})
    assert response.status_code == 302
    assert response["Location"] == reverse("account-detail", args=[searchable["other"].number])


def test_htmx_search_with_one_hit_does_not_redirect(csr_client, searchable):
    response = csr_client.get(reverse("account-search"), {"q": "Zenith"}, **HTMX)
    assert response.status_code == 200
    assert "1 account found" in response.content.decode()


def test_history_restore_gets_the_full_page(csr_client, searchable):
    response = csr_client.get(
        reverse("account-search"), {"q": "Acme"}, HTTP_HX_HISTORY_RESTORE_REQUEST="true", **HTMX
    )
    assert "<html" in response.content.decode()


def test_search_without_match(csr_client, searchable):
    response = csr_client.get(reverse("account-search"), {"q": "no such customer"}, **HTMX)
    body = response.content.decode()
    assert "No accounts found" in body
    assert "<table" not in body


def test_empty_search_shows_no_results(csr_client, searchable):
    response = csr_client.get(reverse("account-search"), {"q": "   "})
    assert response.status_code == 200
    body = response.content.decode()
    assert "<table" not in body
    assert "No accounts found" not in body


def test_too_long_query_is_an_error_not_a_search(csr_client, searchable):
    response = csr_client.get(reverse("account-search"), {"q": "a" * 101}, **HTMX)
    assert response.status_code == 200
    body = response.content.decode()
    assert 'role="alert"' in body
    assert "<table" not in body


def test_search_is_capped(csr_client, account_factory, monkeypatch):
    monkeypatch.setattr("accounts.views.SEARCH_LIMIT", 3)
    for i in range(5):
        account_factory(name=f"Capped Co {i}")
    body = csr_client.get(reverse("account-search"), {"q": "Capped"}, **HTMX).content.decode()
    assert "3+ accounts found" in body
    assert "Showing the first 3; refine the search" in body
    assert body.count('<a class="cell-main"') == 3


def test_search_query_count_does_not_grow_with_results(
    csr_client, account_factory, contact_factory, django_assert_max_num_queries
):
    parent = account_factory(name="Bulk Parent")
    for i in range(20):
        account = account_factory(name=f"Bulk {i}", parent=parent, is_paying=i % 2 == 0)
        contact_factory(account=account, role=Contact.Role.PRIMARY)
    # session, user, roles, search, primary contacts
    with django_assert_max_num_queries(6):
        response = csr_client.get(reverse("account-search"), {"q": "Bulk"}, **HTMX)
    assert response.content.decode().count('<a class="cell-main"') == 21


def test_home_lists_recently_viewed_accounts(csr_client, searchable):
    acme, other = searchable["acme"], searchable["other"]
    csr_client.get(reverse("account-detail", args=[acme.number]))
    csr_client.get(reverse("account-detail", args=[other.number]))
    csr_client.get(reverse("account-detail", args=[acme.number]))
    body = csr_client.get(reverse("csr-home")).content.decode()
    assert "Recently viewed" in body
    assert body.index(f">{acme.number}<") < body.index(f">{other.number}<")
    assert body.count(f'href="/accounts/{acme.number}/"') == 1
