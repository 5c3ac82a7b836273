"""Preview next bill and Bill now from the account page: who may do what, the preview's content, one bill per
confirmation (a double submit lands on the same bill), and refusals shown as messages, not errors."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.test import Client
from django.urls import reverse

from billing_mgmt import roles
from billing_mgmt.models import IdempotencyRecord
from billruns.models import BillSegment
from billruns.services import bill_create
from invoicing.models import BillMessage
from statements.models import FinancialTransaction, Statement
from statements.services import transaction_post
from tests.billruns import builders as b
from tests.billruns.pages import BILL_DATE, billed_household, freeze_today

pytestmark = pytest.mark.django_db
HTMX = {"HTTP_HX_REQUEST": "true"}
NBSP = "\xa0"


@pytest.fixture(autouse=True)
def _today(monkeypatch):
    freeze_today(monkeypatch)


@pytest.fixture
def household():
    account, subscription, _ = billed_household()
    return account


@pytest.fixture
def supervisor_client(client, supervisor_user):
    client.force_login(supervisor_user)
    return client


def _preview(client, account, **extra):
    return client.get(reverse("bill-preview", args=[account.number]), **extra)


def _token(body: str) -> str:
    return re.search(r'<input type="hidden" name="token" value="([^"]+)">', body).group(1)


def _bill(client, account, token: str, *, confirm: bool = True, **extra):
    data = {"token": token, **({"confirm": "yes"} if confirm else {})}
    return client.post(reverse("bill-now", args=[account.number]), data, **extra)


def _stored() -> tuple[int, int, int, int]:
    return (
        Statement.objects.count(),
        FinancialTransaction.objects.count(),
        BillSegment.objects.count(),
        IdempotencyRecord.objects.count(),
    )


# Who may ----------------------------------------------------------------------------------------------------


def test_anonymous_is_sent_to_log_in(client, household):
    preview = reverse("bill-preview", args=[household.number])
    response = client.get(preview)
    assert (response.status_code, response.url) == (302, f"/login/?next={preview}")
    bill = reverse("bill-now", args=[household.number])
    response = client.post(bill, {"token": "x", "confirm": "yes"})
    assert (response.status_code, response.url) == (302, f"/login/?next={bill}")
    assert _stored() == (0, 0, 0, 0)


def test_customer_gets_403(client, user_factory, household):
    client.force_login(user_factory(username="customer", role=roles.CUSTOMER))
    assert _preview(client, household).status_code == 403
    assert _bill(client, household, "x").status_code == 403
    assert _stored() == (0, 0, 0, 0)


def test_csr_may_preview_but_not_bill(csr_client, supervisor_user, household):
    body = _preview(csr_client, household).content.decode()
    assert "Next bill preview" in body
    assert 'name="token"' not in body and "bill-now" not in body
    # A token made for a supervisor does not help a CSR: the permission is checked first.
    supervisor = Client()
    supervisor.force_login(supervisor_user)
    token = _token(_preview(supervisor, household).content.decode())
    assert _bill(csr_client, household, token).status_code == 403
    assert _stored() == (0, 0, 0, 0)


@pytest.mark.parametrize("user_fixture", ["supervisor_user", "billing_admin_user"])
def test_supervisors_and_billing_admins_may_bill(client, request, user_fixture, household):
    client.force_login(request.getfixturevalue(user_fixture))
    token = _token(_preview(client, household).content.decode())
    response = _bill(client, household, token)
    statement = Statement.objects.get(account=household)
    assert (response.status_code, response.url) == (
        302,
        reverse("statement-detail", args=[household.number, statement.pk]),
    )


def test_unknown_account_is_404(supervisor_client, db):
    assert supervisor_client.get(reverse("bill-preview", args=["A-NOPE"])).status_code == 404
    assert supervisor_client.post(reverse("bill-now", args=["A-NOPE"]), {"token": "x"}).status_code == 404


def test_wrong_methods_are_refused(supervisor_client, household):
    assert supervisor_client.post(reverse("bill-preview", args=[household.number])).status_code == 405
    assert supervisor_client.get(reverse("bill-now", args=[household.number])).status_code == 405


# The preview ------------------------------------------------------------------------------------------------


def test_preview_shows_the_amounts_lines_and_messages_and_stores_nothing(csr_client, household):
    BillMessage.objects.create(code="thanks", text="Thank you for your business.", valid_from=BILL_DATE)
    transaction_post(
        account=household, kind="adjustment", amount="-5.00", currency="USD", effective_date=BILL_DATE,
        description="Goodwill credit",
    )  # fmt: skip
    before = _stored()
    response = _preview(csr_client, household)
    assert response.status_code == 200
    assert _stored() == before
    body = response.content.decode()
    assert body.startswith("<!doctype html>")  # a page of its own without htmx
    assert '<li><span aria-current="page">Next bill</span></li>' in body
    summary = re.findall(r'<tr><th scope="row">([^<]+)</th><td class="num[^"]*">([^<]+)</td></tr>', body)
    assert summary == [
        ("Previous balance", "$0.00"),
        ("Payments received", "$0.00"),
        ("Adjustments", "-$5.00"),
        ("New charges", "$36.00"),
        ("Taxes", "$3.60"),
    ]
    assert '<div class="statement-head__total" data-preview-total>$34.60</div>' in body
    assert '<div class="tile__note">Due Jun 24, 2026</div>' in body
    assert "dated Jun 10, 2026 · period Jun 1 – Jun 30, 2026" in body
    # The calculation: 21 of 30 days of 30.00 = 21.00, the activation fee, 10% tax on 36.00.
    rows = re.findall(r'<tr class="row--calc[^"]*" data-kind="(\w+)">(.*?)</tr>', body, re.S)
    assert [kind for kind, _ in rows] == ["one_time", "recurring", "tax"]
    recurring = rows[1][1]
    assert '<span class="cell-main">Monthly fee (in advance, 21 of 30 days)</span>' in recurring
    assert '<td class="nowrap hide-sm">Jun 10 – Jun 30, 2026</td>' in recurring
    assert '<td class="num hide-sm">1</td>' in recurring
    assert '<td class="num hide-sm">$30.00</td>' in recurring  # the rate, per month
    assert '<td class="num hide-sm">0.7</td>' in recurring  # 21 / 30
    assert '<span class="cell-sub sm-only">1 × $30.00 × 0.7</span>' in recurring  # the same, on a phone
    assert '<td class="num" data-amount>$21.00</td>' in recurring
    assert '<td class="num hide-sm">10%</td>' in rows[2][1]
    assert "Goodwill credit" in body and "Adjustment" in body
    assert "<li>Thank you for your business.</li>" in body
    assert "Total for this period" in body and '<td class="num" data-segment-total>$39.60</td>' in body


def test_preview_for_htmx_is_a_fragment(csr_client, household):
    body = _preview(csr_client, household, **HTMX).content.decode()
    assert body.startswith('<div class="bill-preview" id="bill-preview" data-bill-preview>')
    assert body.rstrip().endswith("</div>")
    assert "<html" not in body


def test_preview_lists_the_subscriptions_that_could_not_be_rated(csr_client, household):
    broken = b.plan(name="Broken plan")
    b.recurring(broken, "5.00", valid_from=dt.date(2026, 7, 1))
    b.subscription(household, broken, BILL_DATE, identifier="+15550199999")
    body = _preview(csr_client, household, **HTMX).content.decode()
    assert "Not on this bill: 1 subscription period could not be rated." in body
    assert (
        '<li data-error="no_price"><span class="mono">+15550199999</span>, Jun 1 – Jun 30, 2026: '
        "No price for Monthly fee for monthly billing on 2026-06-10. "
        '<span class="mono">(no_price)</span></li>'
    ) in body
    assert '<div class="statement-head__total" data-preview-total>$39.60</div>' in body


def test_preview_with_nothing_to_bill_says_so(csr_client, household):
    bill_create(account=household, bill_date=BILL_DATE)
    response = _preview(csr_client, household, **HTMX)
    assert response.status_code == 200
    body = response.content.decode()
    assert (
        '<div class="alert alert--error bill-preview__alert" role="alert" data-error-code="nothing_to_bill">'
        in body
    )
    assert (
        "There is nothing to bill: no rated charges and no payments or adjustments since the last bill."
        in body
    )
    assert 'name="token"' not in body


def test_preview_of_a_non_paying_child_is_its_paying_parents_bill(csr_client, household, account_factory):
    child = account_factory(name="Kid", parent=household, is_paying=False)
    body = _preview(csr_client, child, **HTMX).content.decode()
    assert (
        f'For <strong>{household.name}</strong> <span class="mono">{household.number}</span>'
        " (the paying parent)" in body
    )


def test_amounts_are_in_the_accounts_locale(csr_client):
    account, _, _ = billed_household(locale="de_DE")
    body = _preview(csr_client, account, **HTMX).content.decode()
    assert f"data-preview-total>39,60{NBSP}$</div>" in body
    assert f'<td class="num" data-amount>21,00{NBSP}$</td>' in body


# Bill now ---------------------------------------------------------------------------------------------------


def test_bill_now_creates_the_bill_and_shows_the_statement(supervisor_client, supervisor_user, household):
    body = _preview(supervisor_client, household).content.decode()
    assert '<button type="submit" class="btn" data-action="bill-now">Bill now</button>' in body
    assert '<input type="checkbox" name="confirm" value="yes" id="bill-now-confirm" required>' in body
    assert "posts $39.60 of new charges and taxes to its ledger" in body
    response = _bill(supervisor_client, household, _token(body))
    statement = Statement.objects.get(account=household)
    assert response.status_code == 302
    assert response.url == f"/statements/accounts/{household.number}/statements/{statement.pk}/"
    assert (statement.total_due, statement.statement_date) == (b.D("39.60"), BILL_DATE)
    record = IdempotencyRecord.objects.get()
    assert (record.client, record.status_code, record.response_body["statement_id"]) == (
        f"user:{supervisor_user.pk}",
        201,
        statement.pk,
    )
    page = supervisor_client.get(response.url).content.decode()
    assert '<div class="statement-head__total" data-total-due>$39.60</div>' in page


def test_double_submit_makes_one_bill_and_shows_it_again(supervisor_client, household):
    token = _token(_preview(supervisor_client, household).content.decode())
    first = _bill(supervisor_client, household, token)
    second = _bill(supervisor_client, household, token)
    statement = Statement.objects.get(account=household)
    assert first.url == second.url == reverse("statement-detail", args=[household.number, statement.pk])
    assert Statement.objects.count() == 1
    assert FinancialTransaction.objects.filter(kind="bill").count() == 1
    assert IdempotencyRecord.objects.count() == 1
    # By htmx the repeat lands on the same statement too.
    third = _bill(supervisor_client, household, token, **HTMX)
    assert third["HX-Redirect"] == first.url and Statement.objects.count() == 1


def test_bill_now_by_htmx_redirects_and_refreshes_the_account(supervisor_client, household):
    token = _token(_preview(supervisor_client, household, **HTMX).content.decode())
    response = _bill(supervisor_client, household, token, **HTMX)
    statement = Statement.objects.get(account=household)
    assert response.status_code == 200
    assert response["HX-Trigger"] == "account-changed"
    assert response["HX-Redirect"] == reverse("statement-detail", args=[household.number, statement.pk])


def test_a_non_paying_childs_bill_is_its_parents_statement(supervisor_client, household, account_factory):
    child = account_factory(name="Kid", parent=household, is_paying=False)
    token = _token(_preview(supervisor_client, child).content.decode())
    response = _bill(supervisor_client, child, token)
    statement = Statement.objects.get()
    assert statement.account == household
    assert response.url == reverse("statement-detail", args=[household.number, statement.pk])


def test_nothing_to_bill_is_a_message_and_stores_nothing(supervisor_client, household):
    first = _token(_preview(supervisor_client, household).content.decode())
    second = _token(_preview(supervisor_client, household).content.decode())
    _bill(supervisor_client, household, first)
    before = _stored()
    response = _bill(supervisor_client, household, second)
    assert response.status_code == 400
    body = response.content.decode()
    assert body.startswith("<!doctype html>")
    assert 'data-error-code="nothing_to_bill"' in body
    assert (
        "There is nothing to bill: no rated charges and no payments or adjustments since the last bill."
        in body
    )
    assert "Preview the next bill again" in body
    assert _stored() == before  # no second bill, and the unused key was not kept
    htmx = _bill(supervisor_client, household, second, **HTMX)
    assert htmx.status_code == 200  # htmx swaps the message into the panel
    assert "There is nothing to bill" in htmx.content.decode()
    assert "HX-Redirect" not in htmx and "HX-Trigger" not in htmx
    assert _stored() == before


def test_nothing_to_bill_lists_the_subscriptions_in_error_and_keeps_their_errors(
    supervisor_client, household
):
    broken = b.plan(name="Broken plan")
    b.recurring(broken, "5.00", valid_from=dt.date(2026, 7, 1))
    subscription = b.subscription(household, broken, BILL_DATE, identifier="+15550199999")
    token = _token(_preview(supervisor_client, household).content.decode())
    bill_create(account=household)  # someone else billed the account meanwhile; the broken plan stays out
    before = _stored()
    response = _bill(supervisor_client, household, token)
    assert response.status_code == 400
    body = response.content.decode()
    assert "There is nothing to bill: 1 subscription period(s) could not be rated." in body
    assert (
        "<li>2026-06-01 – 2026-06-30: No price for Monthly fee for monthly billing on 2026-06-10.</li>"
        in body
    )
    assert _stored() == before
    # The segment's error stays for the CSR to see on the Subscriptions section.
    assert BillSegment.objects.get(subscription=subscription).error_code == "no_price"


def test_bill_now_without_the_confirmation_is_refused(supervisor_client, household):
    token = _token(_preview(supervisor_client, household).content.decode())
    response = _bill(supervisor_client, household, token, confirm=False)
    assert response.status_code == 400
    assert "Tick the confirmation to create and post the bill." in response.content.decode()
    assert "<li>Confirm that the bill should be posted.</li>" in response.content.decode()
    assert _stored() == (0, 0, 0, 0)
    assert _bill(supervisor_client, household, token).status_code == 302  # the token is still good


@pytest.mark.parametrize("token", ["", "forged", "eyJhY2NvdW50IjoiQSJ9:1tX:abc"])
def test_a_bad_token_is_refused(supervisor_client, household, token):
    response = _bill(supervisor_client, household, token)
    assert response.status_code == 400
    assert "This form is not valid any more. Preview the bill again and confirm from there." in (
        response.content.decode()
    )
    assert _stored() == (0, 0, 0, 0)


def test_a_token_is_bound_to_its_account_and_user(supervisor_client, client, billing_admin_user, household,
                                                  account_factory):  # fmt: skip
    other, _, _ = billed_household(name="Other household")
    token = _token(_preview(supervisor_client, other).content.decode())
    response = _bill(supervisor_client, household, token)
    assert response.status_code == 400
    assert "This confirmation was made for another account." in response.content.decode()
    client.force_login(billing_admin_user)
    assert "This form is not valid any more" in _bill(client, other, token).content.decode()
    assert _stored() == (0, 0, 0, 0)


def test_an_expired_token_asks_for_a_new_preview_but_still_shows_its_bill(
    supervisor_client, household, monkeypatch
):
    used = _token(_preview(supervisor_client, household).content.decode())
    unused = _token(_preview(supervisor_client, household).content.decode())
    first = _bill(supervisor_client, household, used)
    monkeypatch.setattr("billruns.views.TOKEN_MAX_AGE", -1)  # every token is now too old
    again = _bill(supervisor_client, household, used)
    assert again.url == first.url
    response = _bill(supervisor_client, household, unused)
    assert response.status_code == 400
    assert "This confirmation has expired. Preview the bill again" in response.content.decode()
    assert Statement.objects.count() == 1
