"""The account page's lazy parts (billing_mgmt.sections, ``lazy=``): the first response draws each lazy
section's card with a link to its own page, htmx loads each part right after the page, and a notice waiting
in the session brings its section into the first response."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.urls import reverse

from billing_mgmt.sections import HEADER, AccountSection, account_sections, lazy_parts
from tests.pages import HTMX, part_sections, whole_page


@pytest.fixture
def account(account_factory):
    return account_factory(name="Lazy Household")


def _first(client, account) -> str:
    response = client.get(reverse("account-detail", args=[account.number]))
    assert response.status_code == 200
    return response.content.decode()


def test_lazy_sections_are_cards_with_a_link_and_their_parts_load_after(csr_client, csr_user, account):
    body = _first(csr_client, account)
    lazy = [s for s in account_sections(user=csr_user) if s.lazy]
    assert {s.lazy for s in lazy} == {"activity", "usage", "more"}
    for section in lazy:
        url = reverse("account-section", args=[account.number, section.key])
        title = section.title.lower().replace("&", "&amp;")
        assert f'<a href="{url}">Show {title}</a>' in body, section.key
    for part in lazy_parts(user=csr_user):
        url = reverse("account-part", args=[account.number, part])
        assert f'data-part="{part}" hx-get="{url}" hx-trigger="load" hx-swap="none"' in body
    assert "Loading…" in body and "<noscript>" in body
    # The first response leaves them out; the whole page (as the browser builds it) has them.
    assert "No ledger activity." not in body
    assert "No ledger activity." in whole_page(csr_client, reverse("account-detail", args=[account.number]))


def test_a_part_is_fragments_for_htmx_and_a_page_without(csr_client, account):
    url = reverse("account-part", args=[account.number, "activity"])
    fragment = csr_client.get(url, **HTMX).content.decode()
    assert "<html" not in fragment
    assert set(part_sections(fragment)) == {"invoices", "payments", "cases", "disputes"}
    assert 'id="section-payments-body" hx-swap-oob="innerHTML"' in fragment
    page = csr_client.get(url).content.decode()
    assert "<html" in page and "Back to account" in page and 'id="section-cases"' in page
    only = csr_client.get(f"{url}?skip=payments,cases", **HTMX).content.decode()
    assert set(part_sections(only)) == {"invoices", "disputes"}


def test_unknown_parts_and_accounts_are_404(csr_client, account):
    assert csr_client.get(reverse("account-part", args=[account.number, "nope"]), **HTMX).status_code == 404
    assert csr_client.get(reverse("account-part", args=["A-NOPE", "usage"]), **HTMX).status_code == 404


def test_a_waiting_notice_brings_its_section_into_the_first_response(csr_client, account):
    session = csr_client.session
    session[f"payments.notice:payments:{account.number}"] = {"text": "Payment of $1.00 posted."}
    session.save()
    body = _first(csr_client, account)
    payments = body[body.index('id="section-payments-body"') :]
    assert not payments.lstrip().split(">", 1)[1].lstrip().startswith('<p class="section-loading')
    part = reverse("account-part", args=[account.number, "activity"])
    assert f'hx-get="{part}?skip=payments"' in body  # the part does not load it again


def test_header_tiles_are_never_lazy():
    with pytest.raises(ImproperlyConfigured):
        AccountSection(key="tile", title="Tile", view=lambda r, a: "", slot=HEADER, lazy="later")


def test_the_permissions_are_read_once_for_the_whole_request(
    csr_client, account, django_assert_max_num_queries
):
    _first(csr_client, account)
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        _first(csr_client, account)
    reads = [q["sql"] for q in captured.captured_queries if "auth_permission" in q["sql"]]
    assert len(reads) == 1 and "auth_user_groups" in reads[0]
