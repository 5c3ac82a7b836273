"""Refunds of a credit balance and write-offs of what is owed, on the account page's Payments & adjustments
section: the buttons show only when there is something to refund or write off and the user may, the forms
default to the whole amount, refusals land at the fields with nothing posted, a double submit posts once,
card numbers are refused, CSRs cannot write off, and the entries show in the table with who made them."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from billing_mgmt import roles
from billing_mgmt.models import AuditRecord
from payments.models import Refund, WriteOff
from payments.services import (
    payment_method_add,
    payment_method_remove,
    payment_post,
    refund_post,
    write_off_post,
)
from statements.models import FinancialTransaction
from tests.factories import AccountFactory, UserFactory
from tests.payments.test_services import bill
from tests.payments.test_views import CARD, HTMX, _balance, _field_error, _section, _token

pytestmark = pytest.mark.django_db
D = Decimal


@pytest.fixture
def account():
    return AccountFactory(name="Rivera Household")


@pytest.fixture
def supervisor_client(supervisor_user):
    client = Client()  # its own: csr_client is the shared ``client``
    client.force_login(supervisor_user)
    return client


@pytest.fixture
def in_credit(account, csr_user):
    """The account paid 30.00 with nothing owed: a credit of 30.00."""
    payment_post(account=account, amount="30.00", currency="USD", idempotency_key="p-credit", actor=csr_user)
    assert _balance(account) == D("-30.00")
    return account


@pytest.fixture
def owing(account):
    bill(account, "S-1", "80.00")
    assert _balance(account) == D("80.00")
    return account


def _refund(client, account, token=None, htmx=True, **fields):
    if token is None:
        token = _token(_section(client, account, form="refund", **HTMX))
    data = {"amount": "30.00", "reason": "Overpaid, customer asked for it back", "token": token} | fields
    return client.post(reverse("refund-create", args=[account.number]), data, **(HTMX if htmx else {}))


def _write_off(client, account, token=None, htmx=True, **fields):
    if token is None:
        token = _token(_section(client, account, form="write-off", **HTMX))
    data = {"amount": "80.00", "reason": "Uncollectable: customer bankrupt", "token": token} | fields
    return client.post(reverse("write-off-create", args=[account.number]), data, **(HTMX if htmx else {}))


def _posted() -> tuple[int, int, int, int]:
    return (
        Refund.objects.count(),
        FinancialTransaction.objects.filter(kind="refund").count(),
        WriteOff.objects.count(),
        FinancialTransaction.objects.filter(kind="write_off").count(),
    )


def _amount_value(body: str) -> str:
    return re.search(r'<input type="text" name="amount" value="([^"]*)"', body).group(1)


# Buttons ----------------------------------------------------------------------------------------------------


def test_refund_credit_shows_only_with_a_credit_and_write_off_only_when_owed(supervisor_client, account):
    body = _section(supervisor_client, account, **HTMX)  # nothing owed, no credit
    assert 'data-action="refund-credit"' not in body and 'data-action="write-off"' not in body

    bill(account, "S-1", "80.00")
    body = _section(supervisor_client, account, **HTMX)
    assert 'data-action="write-off"' in body and 'data-action="refund-credit"' not in body
    assert "the balance of $80.00" in body

    payment_post(account=account, amount="100.00", currency="USD", idempotency_key="p")
    body = _section(supervisor_client, account, **HTMX)
    assert 'data-action="refund-credit"' in body and 'data-action="write-off"' not in body
    assert 'Refund credit<span class="visually-hidden"> of $20.00</span>' in body


def test_csrs_get_neither_button_nor_form(csr_client, in_credit):
    body = _section(csr_client, in_credit, **HTMX)
    assert 'data-action="new-payment"' in body and 'data-action="refund-credit"' not in body
    assert "data-refund-form" not in _section(csr_client, in_credit, form="refund", **HTMX)
    bill(in_credit, "S-1", "80.00")  # now it owes 50.00
    body = _section(csr_client, in_credit, **HTMX)
    assert 'data-action="write-off"' not in body
    assert "data-write-off-form" not in _section(csr_client, in_credit, form="write-off", **HTMX)


def test_asking_for_a_form_with_nothing_to_refund_or_write_off_opens_none(supervisor_client, account):
    assert "data-refund-form" not in _section(supervisor_client, account, form="refund", **HTMX)
    assert "data-write-off-form" not in _section(supervisor_client, account, form="write-off", **HTMX)


# Refunds ----------------------------------------------------------------------------------------------------


def test_refund_form_defaults_to_the_whole_credit_and_the_default_method(supervisor_client, in_credit):
    card = payment_method_add(
        account=in_credit, kind="card", token="tok_visa", brand="Visa", last4="4242", expiry_month=12,
        expiry_year=2040, make_default=True,
    )  # fmt: skip
    removed = payment_method_add(account=in_credit, kind="other", description="Old cheques")
    payment_method_remove(method=removed)
    body = _section(supervisor_client, in_credit, form="refund", **HTMX)
    assert "data-refund-form" in body and "The account has a credit of $30.00." in body
    assert _amount_value(body) == "30.00"
    assert f'<option value="{card.pk}" selected>Visa •••• 4242' in body
    assert "Old cheques" not in body
    assert 'name="token"' in body and "cvv" not in body.lower()


def test_refund_posts_and_shows_in_the_table_with_who_made_it(supervisor_client, supervisor_user, in_credit):
    card = payment_method_add(
        account=in_credit, kind="card", token="tok_visa", brand="Visa", last4="4242", expiry_month=12,
        expiry_year=2040,
    )  # fmt: skip
    response = _refund(supervisor_client, in_credit, amount="12.50", method=card.pk)
    assert response.status_code == 204 and response["HX-Trigger"] == "account-changed"
    refund = Refund.objects.get()
    assert (refund.amount, refund.method, refund.created_by, refund.reason) == (
        D("12.50"), card, supervisor_user, "Overpaid, customer asked for it back",
    )  # fmt: skip
    assert refund.idempotency_key.startswith("csr-refund:")
    assert _balance(in_credit) == D("-17.50")
    assert AuditRecord.objects.filter(action="refund.post", object_id=str(refund.pk)).exists()

    body = _section(supervisor_client, in_credit, **HTMX)
    assert "Refund of $12.50 posted." in body
    row = re.search(
        rf'<tr data-entry="refund-{refund.pk}" data-entry-type="refund".*?</tr>', body, re.S
    ).group()
    assert '<span class="cell-main">Refund</span>' in row
    assert '<td class="num nowrap amount--debit">$12.50</td>' in row  # the credit shrinks
    assert "Overpaid, customer asked for it back" in row and "Paid back to Visa •••• 4242" in row
    assert '<td class="hide-sm">supervisor</td>' in row and 'data-reverse="' not in row
    # What credit is left can still be refunded.
    assert 'Refund credit<span class="visually-hidden"> of $17.50</span>' in body


def test_refund_without_javascript_lands_back_on_the_account_page(supervisor_client, in_credit):
    response = _refund(supervisor_client, in_credit, htmx=False)
    assert response.status_code == 302
    assert response["Location"] == f"/accounts/{in_credit.number}/#section-payments"
    assert "Refund of $30.00 posted." in supervisor_client.get(response["Location"]).content.decode()
    assert _balance(in_credit) == D("0.00")


def test_a_refund_above_the_credit_is_refused_at_the_amount(supervisor_client, in_credit):
    response = _refund(supervisor_client, in_credit, amount="30.01")
    body = response.content.decode()
    assert response.status_code == 200  # htmx swaps only 2xx: the form shows its errors in place
    assert (
        "data-refund-form" in body and _field_error(body, "amount") == "At most $30.00, the account’s credit."
    )
    assert _posted() == (0, 0, 0, 0) and _balance(in_credit) == D("-30.00")
    # Without htmx it is a page of its own with the 400.
    plain = _refund(supervisor_client, in_credit, htmx=False, amount="31.00")
    assert (
        plain.status_code == 400
        and _field_error(plain.content.decode(), "amount") == "At most $30.00, the account’s credit."
    )
    assert _posted() == (0, 0, 0, 0)


def test_a_refund_whose_credit_went_meanwhile_keeps_its_form_with_the_error(supervisor_client, in_credit):
    token = _token(_section(supervisor_client, in_credit, form="refund", **HTMX))
    refund_post(
        account=in_credit, amount="30.00", currency="USD", reason="By phone", idempotency_key="other",
        actor=None,
    )  # fmt: skip
    body = _refund(supervisor_client, in_credit, token=token).content.decode()
    assert (
        "data-refund-form" in body
        and _field_error(body, "amount") == "The account has no credit left to refund."
    )
    assert Refund.objects.count() == 1


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"amount": ""}, "amount", "Enter the amount to pay back."),
        ({"amount": "0"}, "amount", "The amount must be more than zero."),
        ({"amount": "-5"}, "amount", "The amount must be more than zero."),
        ({"amount": "1.234"}, "amount", "USD amounts have at most 2 decimal places."),
        ({"reason": ""}, "reason", "Say why the money is paid back."),
        (
            {"method": "999999"},
            "method",
            "That method cannot be used: it was removed or is another account&#x27;s.",
        ),
    ],
)
def test_bad_refund_inputs_are_shown_at_their_field(supervisor_client, in_credit, fields, field, message):
    body = _refund(supervisor_client, in_credit, **fields).content.decode()
    assert _field_error(body, field) == message
    assert _posted() == (0, 0, 0, 0)


def test_another_accounts_method_is_refused(supervisor_client, in_credit):
    theirs = payment_method_add(account=AccountFactory(), kind="other", description="Their cheques")
    body = _refund(supervisor_client, in_credit, method=theirs.pk).content.decode()
    assert _field_error(body, "method").startswith("That method cannot be used")
    assert _posted() == (0, 0, 0, 0)


def test_double_submit_makes_one_refund(supervisor_client, in_credit):
    token = _token(_section(supervisor_client, in_credit, form="refund", **HTMX))
    first = _refund(supervisor_client, in_credit, token=token, amount="10.00")
    second = _refund(supervisor_client, in_credit, token=token, amount="10.00")
    assert (first.status_code, second.status_code) == (204, 204)
    assert _posted() == (1, 1, 0, 0) and _balance(in_credit) == D("-20.00")
    body = _section(supervisor_client, in_credit, **HTMX)
    assert "This refund of $10.00 was already recorded: nothing more was posted." in body
    # The same token with another amount is refused on the form.
    third = _refund(supervisor_client, in_credit, token=token, amount="5.00").content.decode()
    assert "This form was already used for a refund of $10.00. Nothing more was posted." in third
    assert _posted() == (1, 1, 0, 0)


def test_a_forged_or_another_forms_token_is_refused(supervisor_client, in_credit):
    body = _refund(supervisor_client, in_credit, token="forged").content.decode()
    assert "This form is not valid any more." in body
    payment_token = _token(_section(supervisor_client, in_credit, form="payment", **HTMX))
    body = _refund(supervisor_client, in_credit, token=payment_token).content.decode()
    assert "This form was made for another account." in body
    assert _posted() == (0, 0, 0, 0)


def test_a_card_number_in_the_reason_is_refused_and_not_shown_back(supervisor_client, in_credit):
    body = _refund(supervisor_client, in_credit, reason=f"back to card {CARD}").content.decode()
    assert "This looks like a full card number." in _field_error(body, "reason")
    assert CARD not in body and CARD.replace(" ", "") not in body
    assert _posted() == (0, 0, 0, 0)


@pytest.mark.parametrize("name", ["cvv", "card_number", "pan"])
def test_card_data_fields_are_refused(supervisor_client, in_credit, name):
    body = _refund(supervisor_client, in_credit, **{name: "4242424242424242"}).content.decode()
    assert "Card numbers and security codes are never entered here." in body
    assert "4242424242424242" not in body
    assert _posted() == (0, 0, 0, 0)


# Write-offs -------------------------------------------------------------------------------------------------


def test_write_off_form_defaults_to_what_is_owed(supervisor_client, owing):
    body = _section(supervisor_client, owing, form="write-off", **HTMX)
    assert "data-write-off-form" in body and "The account owes $80.00." in body
    assert _amount_value(body) == "80.00"


def test_a_supervisor_writes_off_and_it_shows_in_the_table(supervisor_client, supervisor_user, owing):
    response = _write_off(supervisor_client, owing, amount="30.00")
    assert response.status_code == 204 and response["HX-Trigger"] == "account-changed"
    write_off = WriteOff.objects.get()
    assert (write_off.amount, write_off.created_by) == (D("30.00"), supervisor_user)
    assert _balance(owing) == D("50.00") and _posted() == (0, 0, 1, 1)
    body = _section(supervisor_client, owing, **HTMX)
    assert "Write-off of $30.00 posted." in body
    row = re.search(
        rf'<tr data-entry="write_off-{write_off.pk}" data-entry-type="write_off".*?</tr>', body, re.S
    )
    row = row.group()
    assert '<span class="cell-main">Write-off</span>' in row
    assert '<td class="num nowrap amount--credit">-$30.00</td>' in row
    assert "Uncollectable: customer bankrupt" in row and '<td class="hide-sm">supervisor</td>' in row


def test_a_write_off_above_the_balance_is_refused_at_the_amount(supervisor_client, owing):
    body = _write_off(supervisor_client, owing, amount="80.01").content.decode()
    assert (
        "data-write-off-form" in body
        and _field_error(body, "amount") == "At most $80.00, what the account owes."
    )
    assert _posted() == (0, 0, 0, 0) and _balance(owing) == D("80.00")


def test_write_off_needs_a_reason_and_refuses_a_card_number(supervisor_client, owing):
    body = _write_off(supervisor_client, owing, reason="").content.decode()
    assert _field_error(body, "reason") == "Say why the balance is written off."
    body = _write_off(supervisor_client, owing, reason=f"card {CARD} declined").content.decode()
    assert "This looks like a full card number." in _field_error(body, "reason")
    assert CARD not in body
    assert _posted() == (0, 0, 0, 0)


def test_double_submit_makes_one_write_off(supervisor_client, owing):
    token = _token(_section(supervisor_client, owing, form="write-off", **HTMX))
    assert _write_off(supervisor_client, owing, token=token).status_code == 204
    assert _write_off(supervisor_client, owing, token=token).status_code == 204
    assert _posted() == (0, 0, 1, 1) and _balance(owing) == D("0.00")


# Permissions ------------------------------------------------------------------------------------------------


def test_csrs_cannot_write_off_or_refund(csr_client, supervisor_client, owing):
    token = _token(_section(supervisor_client, owing, form="write-off", **HTMX))  # a supervisor's form
    response = csr_client.post(
        reverse("write-off-create", args=[owing.number]),
        {"amount": "10.00", "reason": "Uncollectable", "token": token},
        **HTMX,
    )
    assert response.status_code == 403
    response = csr_client.post(
        reverse("refund-create", args=[owing.number]), {"amount": "1.00", "reason": "x", "token": "t"}, **HTMX
    )
    assert response.status_code == 403
    assert _posted() == (0, 0, 0, 0)


@pytest.mark.parametrize("name", ["refund-create", "write-off-create"])
def test_anonymous_users_are_sent_to_log_in(client, owing, name):
    response = client.post(reverse(name, args=[owing.number]), {"amount": "1", "reason": "x"})
    assert response.status_code == 302 and response["Location"].startswith("/login/")
    assert _posted() == (0, 0, 0, 0)


@pytest.mark.parametrize("name", ["refund-create", "write-off-create"])
def test_customers_get_403(client, owing, name):
    client.force_login(UserFactory(username="customer", role=roles.CUSTOMER))
    response = client.post(reverse(name, args=[owing.number]), {"amount": "1", "reason": "x"})
    assert response.status_code == 403
    assert _posted() == (0, 0, 0, 0)


def test_get_is_not_allowed(supervisor_client, owing):
    assert supervisor_client.get(reverse("write-off-create", args=[owing.number])).status_code == 405


def test_an_unknown_account_is_404(supervisor_client):
    response = supervisor_client.post(reverse("refund-create", args=["NO-SUCH"]), {"amount": "1"}, **HTMX)
    assert response.status_code == 404


# Queries ----------------------------------------------------------------------------------------------------


def test_section_queries_do_not_grow_with_refunds_and_write_offs(supervisor_client, csr_client, account):
    def count(client) -> int:
        with CaptureQueriesContext(connection) as ctx:
            _section(client, account, **HTMX)
        return len(ctx)

    bill(account, "S-1", "100.00")
    payment_post(account=account, amount="10.00", currency="USD", idempotency_key="p-small")
    write_off_post(
        account=account, amount="1.00", currency="USD", reason="w0", idempotency_key="w0",
        actor=UserFactory(username="sup2", role=roles.SUPERVISOR),
    )  # fmt: skip
    few_supervisor, few_csr = count(supervisor_client), count(csr_client)
    # A supervisor's section reads two things more, whatever the rows: the balance (who may refund or write
    # off) and the count of adjustments awaiting approval.
    assert few_supervisor == few_csr + 2
    boss = UserFactory(username="sup3", role=roles.SUPERVISOR)
    for i in range(1, 8):
        write_off_post(
            account=account,
            amount="1.00",
            currency="USD",
            reason=f"w{i}",
            idempotency_key=f"w{i}",
            actor=boss,
        )
    payment_post(account=account, amount="200.00", currency="USD", idempotency_key="p-big")
    for i in range(8):
        refund_post(account=account, amount="1.00", currency="USD", reason=f"r{i}", idempotency_key=f"r{i}")
    assert count(supervisor_client) == few_supervisor
    assert count(csr_client) == few_csr
    body = _section(supervisor_client, account, **HTMX)
    assert body.count('data-entry-type="refund"') == 8 and body.count('data-entry-type="write_off"') == 6
