"""The section registry (billing_mgmt.sections): how any app adds a part to the account page."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.urls import reverse
from django.utils.html import format_html

from billing_mgmt import sections
from billing_mgmt.sections import AccountSection, account_sections, register_section

HTMX = {"HTTP_HX_REQUEST": "true"}


def notes_section(request, account):
    return format_html('<p class="notes">Notes for {} by {}</p>', account.name, request.user.get_username())


@pytest.fixture
def notes():
    """A section registered the way a later app would, removed again after the test."""
    section = register_section(
        AccountSection(
            key="notes", title="Notes", view="tests.accounts.test_views_sections.notes_section", order=5
        )
    )
    yield section
    sections.unregister_section("notes")


def test_sections_are_registered_by_their_apps():
    keys = {s.key: (s.slot, s.title) for s in account_sections()}
    assert keys == {
        "balance": ("header", "Balance"),
        "past-due": ("header", "Past due"),
        "biller-balances": ("main", "Account balances"),
        "statements": ("main", "Statements"),
        "invoices": ("main", "Invoices"),
        "payments": ("main", "Payments & adjustments"),
        "cases": ("main", "Cases"),
        "disputes": ("main", "Disputes"),
        "charts": ("main", "Billing & usage"),
        "subscriptions": ("main", "Subscriptions"),
        "wallet": ("main", "Prepaid wallet"),
        "ledger": ("main", "Ledger"),
        "history": ("main", "History"),
        "profile": ("side", "Billing profile"),
        "payment-methods": ("side", "Payment methods"),
        "freshness": ("side", "Data from billers"),
        "contacts": ("side", "Contacts"),
        "references": ("side", "Biller references"),
    }


def test_sections_are_ordered_per_slot():
    side = [s.key for s in account_sections(slot="side")]
    assert side == ["profile", "payment-methods", "freshness", "contacts", "references"]
    main = [s.key for s in account_sections(slot="main")]
    assert main == [
        "biller-balances",
        "statements",
        "invoices",
        "payments",
        "cases",
        "disputes",
        "charts",
        "subscriptions",
        "wallet",
        "ledger",
        "history",
    ]


def test_registering_the_same_section_again_is_harmless():
    before = account_sections()
    register_section(sections.get_section("ledger"))
    assert account_sections() == before


def test_a_different_section_under_a_taken_key_is_refused():
    with pytest.raises(ImproperlyConfigured, match="'ledger' is already registered differently"):
        register_section(AccountSection(key="ledger", title="Other ledger", view=notes_section))
    assert sections.get_section("ledger").title == "Ledger"


@pytest.mark.parametrize(("key", "slot"), [("notes", "footer"), ("Notes", "main"), ("no tes", "main")])
def test_bad_definitions_are_refused(key, slot):
    with pytest.raises(ImproperlyConfigured):
        AccountSection(key=key, title="Notes", view=notes_section, slot=slot)


def test_a_new_section_appears_on_the_page_and_at_its_url(client, csr_user, account_factory, notes):
    account = account_factory(name="Acme")
    client.force_login(csr_user)
    body = client.get(reverse("account-detail", args=[account.number])).content.decode()
    assert '<p class="notes">Notes for Acme by csr</p>' in body
    assert body.index('id="section-notes"') < body.index('id="section-ledger"')  # order 5 before 50
    fragment = client.get(reverse("account-section", args=[account.number, "notes"]), **HTMX)
    assert fragment.content.decode() == '<p class="notes">Notes for Acme by csr</p>'


def test_a_section_needing_a_permission_is_hidden_without_it(client, csr_user, account_factory):
    register_section(
        AccountSection(key="secret", title="Secret", view=notes_section, permission="payments.add_nothing")
    )
    try:
        account = account_factory()
        client.force_login(csr_user)
        body = client.get(reverse("account-detail", args=[account.number])).content.decode()
        assert 'id="section-secret"' not in body
        response = client.get(reverse("account-section", args=[account.number, "secret"]), **HTMX)
        assert response.status_code == 404
    finally:
        sections.unregister_section("secret")


def test_section_html_that_is_not_marked_safe_is_escaped(client, csr_user, account_factory):
    register_section(AccountSection(key="raw", title="Raw", view=lambda request, account: "<b>x</b>"))
    try:
        client.force_login(csr_user)
        body = client.get(reverse("account-detail", args=[account_factory().number])).content.decode()
        assert "&lt;b&gt;x&lt;/b&gt;" in body
    finally:
        sections.unregister_section("raw")


def test_roles_get_permissions_of_apps_migrated_after_the_kernel(db):
    """post_migrate reaches the kernel before accounts/statements have permissions (fresh database, test
    flush): ensure_roles must create them, or CSRs would see an account page without sections."""
    from django.contrib.auth.models import Group, Permission

    from billing_mgmt.roles import CSR, ensure_roles

    Permission.objects.filter(content_type__app_label__in=["accounts", "statements"]).delete()
    ensure_roles()
    codenames = set(Group.objects.get(name=CSR).permissions.values_list("codename", flat=True))
    assert {
        "view_account",
        "view_billingprofile",
        "view_financialtransaction",
        "view_accountbalance",
    } <= codenames
