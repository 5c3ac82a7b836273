"""The account page's Subscriptions section: the account's subscriptions (and its non-paying children's), each
with its last bill segment, so that a CSR sees why something is not billed; who sees it; bounded queries."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.contrib.auth.models import Group, Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from billing_mgmt import roles
from billing_mgmt.sections import MAIN, account_sections, get_section
from billruns.models import BillSegment, Subscription
from billruns.services import bill_create, subscription_rate
from tests.billruns import builders as b
from tests.billruns.pages import BILL_DATE, add_subscriptions, billed_household, mobile_plan
from tests.pages import whole_page

pytestmark = pytest.mark.django_db
HTMX = {"HTTP_HX_REQUEST": "true"}


def _section(client, account, **extra) -> str:
    response = client.get(reverse("account-section", args=[account.number, "subscriptions"]), **extra)
    assert response.status_code == 200
    return response.content.decode()


def _page(client, account) -> str:
    """The account page as a browser shows it: its lazy parts loaded (tests/pages.py)."""
    return whole_page(client, reverse("account-detail", args=[account.number]))


def _row(body: str, identifier: str) -> str:
    """The table row of one subscription."""
    start = body.index(f'<span class="cell-main mono">{identifier}</span>')
    return body[body.rindex("<tr", 0, start) : body.index("</tr>", start)]


def test_section_is_registered_in_the_main_column():
    section = get_section("subscriptions")
    assert (section.title, section.slot, section.order, section.permission) == (
        "Subscriptions",
        MAIN,
        30,
        "billruns.view_subscription",
    )
    assert [s.key for s in account_sections(slot=MAIN)].index(
        "subscriptions"
    ) == 7  # after charts (and invoices, payments, cases, disputes), before ledger


def test_section_lists_the_subscription_with_plan_dates_status_and_frequency(csr_client):
    account, subscription, plan = billed_household()
    body = _page(csr_client, account)
    assert 'id="section-subscriptions"' in body
    row = _row(body, "+15550100100")
    assert '<span class="cell-main">Mobile 30</span>' in row
    assert f'<span class="cell-sub">{plan.product.name}</span>' in row
    assert 'Jun 10, 2026 – <span class="muted">open</span>' in row
    assert '<span class="cell-sub">Monthly</span>' in row
    assert '<span class="badge badge--status badge--sub-active">Active</span>' in row
    assert '<span class="muted">Not billed yet</span>' in row
    assert '<span class="muted">Not rated yet</span>' in row


def test_last_segment_billed_error_and_rated_are_told_apart(csr_client):
    account, good, _ = billed_household()
    broken = b.plan(name="Broken plan")
    b.recurring(broken, "5.00", valid_from=dt.date(2026, 7, 1))  # no price in June
    bad = b.subscription(account, broken, dt.date(2026, 6, 1), identifier="+15550100200", sequence=1)
    statement = bill_create(account=account, bill_date=BILL_DATE).statement
    late = b.subscription(account, mobile_plan(name="Data 10"), BILL_DATE, identifier="+15550100300")
    subscription_rate(subscription=late, bill_as_of=BILL_DATE)

    body = _section(csr_client, account, **HTMX)
    billed = _row(body, "+15550100100")
    assert '<span class="badge badge--status badge--seg-billed">Billed</span>' in billed
    assert "Jun 30, 2026" in billed  # billed through the end of the period
    url = reverse("statement-detail", args=[account.number, statement.pk])
    assert f'<a href="{url}" class="mono">{statement.number}</a>' in billed

    error = _row(body, "+15550100200")
    assert 'class="row--error"' in error
    assert '<span class="badge badge--status badge--seg-error">Error</span>' in error
    segment = BillSegment.objects.get(subscription=bad)
    assert segment.error_message == "No price for Monthly fee for monthly billing on 2026-06-01."
    assert (
        '<span class="subs-error" role="note"><span class="visually-hidden">Why it is not billed: </span>'
        "No price for Monthly fee for monthly billing on 2026-06-01. "
        '<span class="mono muted">(no_price)</span></span>'
    ) in error

    rated = _row(body, "+15550100300")
    assert '<span class="badge badge--status badge--seg-rated">Rated, not billed</span>' in rated
    assert "Jun 10 – Jun 30, 2026" not in rated  # a segment is a whole period
    assert "Jun 1 – Jun 30, 2026" in rated


def test_a_paying_parent_lists_its_non_paying_childrens_subscriptions(csr_client, account_factory):
    parent, _, plan = billed_household(name="Holding")
    child = account_factory(name="Store 7", parent=parent, is_paying=False)
    grandchild = account_factory(name="Till 2", parent=child, is_paying=False)
    paying_child = account_factory(name="Own bills", parent=parent, is_paying=True)
    b.subscription(child, plan, BILL_DATE, identifier="+15550100201")
    b.subscription(grandchild, plan, BILL_DATE, identifier="+15550100301")
    b.subscription(paying_child, plan, BILL_DATE, identifier="+15550100401")

    body = _section(csr_client, parent, **HTMX)
    identifiers = re.findall(r'<span class="cell-main mono">([^<]+)</span>', body)
    assert identifiers == ["+15550100100", "+15550100201", "+15550100301"]  # own first, no paying child's
    assert f'<span class="cell-sub">Store 7 <span class="mono">{child.number}</span></span>' in body
    assert "of this account and of the non-paying accounts billed with it" in body

    # The child's page: its own subscription, and where it is billed.
    child_body = _section(csr_client, child, **HTMX)
    assert re.findall(r'<span class="cell-main mono">([^<]+)</span>', child_body) == ["+15550100201"]
    assert "Billed on the bill of paying parent" in child_body
    assert f'<a href="/accounts/{parent.number}/">Holding</a>' in child_body


def test_empty_state(csr_client, account_factory):
    account = account_factory()
    body = _section(csr_client, account, **HTMX)
    assert '<div class="empty"><strong>No subscriptions.</strong>This account does not subscribe' in body
    assert "Preview next bill" not in body
    assert "<table" not in body


def test_csr_gets_the_preview_button_and_no_bill_now(csr_client):
    account, _, _ = billed_household()
    body = _section(csr_client, account, **HTMX)
    preview = reverse("bill-preview", args=[account.number])
    assert f'href="{preview}" data-action="preview-bill"' in body
    assert f'hx-get="{preview}" hx-target="#bill-panel"' in body
    assert "Nothing is stored." in body
    assert "bill now" not in body.lower()


def test_supervisor_is_told_bill_now_is_in_the_preview(client, supervisor_user):
    account, _, _ = billed_household()
    client.force_login(supervisor_user)
    assert "then bill now from the preview" in _section(client, account, **HTMX)


def test_fragment_for_htmx_and_a_page_without(csr_client):
    account, _, _ = billed_household()
    fragment = _section(csr_client, account, **HTMX)
    assert "<html" not in fragment and "+15550100100" in fragment
    page = _section(csr_client, account)
    assert page.startswith("<!doctype html>")
    assert '<h1 class="card__title" id="section-title">Subscriptions' in page


def test_hidden_without_the_permission(csr_client):
    account, _, _ = billed_household()
    Group.objects.get(name=roles.CSR).permissions.remove(
        Permission.objects.get(content_type__app_label="billruns", codename="view_subscription")
    )
    assert 'id="section-subscriptions"' not in _page(csr_client, account)
    url = reverse("account-section", args=[account.number, "subscriptions"])
    assert csr_client.get(url).status_code == 404


def test_customer_gets_403_and_anonymous_goes_to_log_in(client, user_factory):
    account, _, _ = billed_household()
    url = reverse("account-section", args=[account.number, "subscriptions"])
    response = client.get(url)
    assert (response.status_code, response.url) == (302, f"/login/?next={url}")
    client.force_login(user_factory(username="customer", role=roles.CUSTOMER))
    assert client.get(url).status_code == 403


def test_the_account_page_is_capped_and_the_section_page_shows_more(csr_client, monkeypatch):
    monkeypatch.setattr("billruns.views.SUBSCRIPTIONS_SHOWN", 3)
    monkeypatch.setattr("billruns.views.SUBSCRIPTIONS_SHOWN_FULL", 4)
    account, _, plan = billed_household()
    add_subscriptions(account, plan, 4)
    body = _page(csr_client, account)
    section = body[body.index('id="section-subscriptions"') : body.index('id="section-ledger"')]
    assert section.count("data-subscription=") == 3
    assert (
        f'<a href="/accounts/{account.number}/sections/subscriptions/">Show all subscriptions</a>' in section
    )
    full = _section(csr_client, account)
    assert full.count("data-subscription=") == 4
    assert "Showing the first 4 subscriptions." in full


def _queries(client, account) -> int:
    with CaptureQueriesContext(connection) as queries:
        _section(client, account, **HTMX)
    return len(queries.captured_queries)


def test_queries_do_not_grow_with_subscriptions(csr_client, account_factory, django_assert_max_num_queries):
    few, _, plan = billed_household(name="Few")
    many, _, _ = billed_household(name="Many")
    child = account_factory(name="Child", parent=many, is_paying=False)
    for account in (few, many):
        b.subscription(account_factory(parent=account, is_paying=False), plan, BILL_DATE)
    add_subscriptions(many, plan, 12)
    add_subscriptions(child, plan, 8)
    for subscription in Subscription.objects.filter(account__in=[many, child]):
        subscription_rate(subscription=subscription, bill_as_of=BILL_DATE)
    assert BillSegment.objects.filter(subscription__account__in=[many, child]).count() == 21

    _section(csr_client, few, **HTMX)  # the first request writes the session
    # The frame: session, user, groups, the account with its contacts and references, permissions (2). The
    # section: non-paying children per hierarchy level (2: one level, then none), subscriptions, their last
    # segments.
    with django_assert_max_num_queries(12):
        _section(csr_client, many, **HTMX)
    assert _queries(csr_client, few) == _queries(csr_client, many)


def test_last_segment_is_the_newest_of_several_and_found_without_postgresql_only_sql():
    """The embedded default (`make run`) is SQLite: the selector must not use DISTINCT ON."""
    from billruns import selectors

    account, good, _ = billed_household()
    subscription_rate(subscription=good, bill_as_of=dt.date(2026, 8, 1))
    with CaptureQueriesContext(connection) as queries:
        rows, more = selectors.account_subscriptions(accounts=[account], limit=10)
    assert not any("DISTINCT ON" in q["sql"].upper() for q in queries.captured_queries)
    (row,) = [r for r in rows if r.pk == good.pk]
    assert row.last_segment.period_start == dt.date(2026, 8, 1)
    assert BillSegment.objects.filter(subscription=good).count() == 3
