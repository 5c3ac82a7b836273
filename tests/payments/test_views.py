"""The CSR pages of payments: the account page's Payments & adjustments and Payment methods sections with
their forms (one-time tokens, errors at the fields, no card data ever accepted or shown back), and the
supervisors' queue of adjustments awaiting approval; who may do what; bounded queries."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from billing_mgmt import roles
from payments.models import Adjustment, AdjustmentLimit, AdjustmentReason, Payment, PaymentMethod
from payments.services import adjustment_request, payment_method_add, payment_post, payment_reverse
from statements.models import AccountBalance, BalanceType, Statement
from tests.factories import AccountFactory, UserFactory
from tests.payments.test_services import bill

pytestmark = pytest.mark.django_db
D = Decimal
HTMX = {"HTTP_HX_REQUEST": "true"}
CARD = "4111 1111 1111 1111"  # a test card number (passes Luhn): never accepted, never shown back


@pytest.fixture
def account():
    return AccountFactory(name="Rivera Household")


@pytest.fixture
def reason():
    return AdjustmentReason.objects.create(code="goodwill", name="Goodwill credit", direction="both")


@pytest.fixture
def csr_limit():
    return AdjustmentLimit.objects.create(
        role=Group.objects.get_or_create(name=roles.CSR)[0], currency="USD", max_amount=D("25.00")
    )


@pytest.fixture
def supervisor_client(client, supervisor_user):
    client.force_login(supervisor_user)
    return client


def _section(client, account, key="payments", form=None, **extra) -> str:
    url = reverse("account-section", args=[account.number, key]) + (f"?form={form}" if form else "")
    response = client.get(url, **extra)
    assert response.status_code == 200
    return response.content.decode()


def _token(body: str) -> str:
    return re.search(r'<input type="hidden" name="token" value="([^"]+)">', body).group(1)


def _pay(client, account, token=None, htmx=True, **fields):
    if token is None:
        token = _token(_section(client, account, form="payment", **HTMX))
    data = {"amount": "40.00", "payment_date": timezone.localdate().isoformat(), "token": token} | fields
    return client.post(reverse("payment-create", args=[account.number]), data, **(HTMX if htmx else {}))


def _adjust(client, account, why, token=None, **fields):
    if token is None:
        token = _token(_section(client, account, form="adjustment", **HTMX))
    data = {"direction": "credit", "amount": "10.00", "reason": why.pk, "token": token} | fields
    return client.post(reverse("adjustment-create", args=[account.number]), data, **HTMX)


def _balance(account) -> Decimal:
    row = AccountBalance.objects.filter(account=account, balance_type=BalanceType.RECEIVABLE).first()
    return row.amount if row else D(0)


def _field_error(body: str, name: str) -> str:
    match = re.search(rf'data-field-error="{name}">([^<]*)<', body)
    return match.group(1) if match else ""


# The Payments & adjustments section ---------------------------------------------------------------------


def test_section_lists_payments_reversals_and_adjustments_newest_first(
    csr_client, csr_user, supervisor_user, account, reason, csr_limit
):
    bill(account, "S-1", "100.00")
    first, _ = payment_post(
        account=account, amount="30.00", currency="USD", idempotency_key="p1", reference="CHQ 991",
        actor=csr_user,
    )  # fmt: skip
    payment_reverse(payment=first, reason="Cheque bounced", actor=csr_user)
    adjustment_request(
        account=account, direction="credit", amount="10.00", currency="USD", reason=reason,
        idempotency_key="a1", actor=csr_user,
    )  # fmt: skip
    adjustment_request(
        account=account, direction="debit", amount="80.00", currency="USD", reason=reason,
        idempotency_key="a2", note="Late fee", actor=csr_user,
    )  # fmt: skip
    body = _section(csr_client, account, **HTMX)
    types = re.findall(r'data-entry-type="(\w+)" data-status="(\w+)"', body)
    assert types == [
        ("debit", "pending"),
        ("credit", "posted"),
        ("reversal", "posted"),
        ("payment", "reversed"),
    ]
    assert "Debit adjustment" in body and "Credit adjustment" in body and "Reversal" in body
    assert "Pending approval" in body and "Reversed" in body
    # Payments and credits lower what is owed (shown like the ledger's credits); debits and reversals
    # raise it.
    assert '<td class="num nowrap amount--credit">-$30.00</td>' in body
    assert '<td class="num nowrap amount--debit">$30.00</td>' in body
    assert '<td class="num nowrap amount--debit">$80.00</td>' in body
    assert '<td class="num nowrap amount--credit">-$10.00</td>' in body
    assert "CHQ 991" in body and "Cheque bounced" in body and "Late fee" in body
    assert body.count('<td class="hide-sm">csr</td>') == 4
    assert '<th scope="col">Status</th>' in body
    # A CSR has both buttons and no queue link; the reversed payment has no Reverse form.
    assert 'data-action="new-payment"' in body and 'data-action="new-adjustment"' in body
    assert "data-pending-link" not in body
    assert 'data-reverse="' not in body


def test_supervisors_see_the_queue_link_with_the_count(supervisor_client, csr_user, account, reason):
    for i in range(3):
        adjustment_request(
            account=account, direction="credit", amount="50.00", currency="USD", reason=reason,
            idempotency_key=f"a{i}", actor=csr_user,
        )  # fmt: skip
    body = _section(supervisor_client, account, **HTMX)
    assert '<span class="badge badge--info" data-pending-count>3</span> adjustments awaiting approval' in body
    assert f'href="{reverse("adjustment-queue")}"' in body


def test_viewers_without_add_permissions_get_no_buttons(client, account, csr_user):
    from django.contrib.auth.models import Permission

    # A staff role that may only look (the CSR role without its add permissions, for this test).
    group = Group.objects.get(name=roles.CSR)
    group.permissions.remove(
        *Permission.objects.filter(content_type__app_label="payments", codename__startswith="add_")
    )
    viewer = UserFactory(username="viewer", role=roles.CSR)
    payment_post(account=account, amount="5.00", currency="USD", idempotency_key="p", actor=csr_user)
    client.force_login(viewer)
    body = _section(client, account, **HTMX)
    assert 'data-entry-type="payment"' in body
    assert "New payment" not in body and "New adjustment" not in body and "Reverse" not in body
    # Asking for the form does not open it either.
    assert "data-payment-form" not in _section(client, account, form="payment", **HTMX)


def test_section_queries_do_not_grow_with_rows(supervisor_client, csr_user, account, reason, csr_limit):
    def entries(n, start):
        for i in range(start, start + n):
            payment_post(
                account=account, amount="1.00", currency="USD", idempotency_key=f"p{i}", actor=csr_user
            )
            adjustment_request(
                account=account, direction="credit", amount="1.00", currency="USD", reason=reason,
                idempotency_key=f"a{i}", actor=csr_user,
            )  # fmt: skip

    def count() -> int:
        with CaptureQueriesContext(connection) as ctx:
            _section(supervisor_client, account, **HTMX)
        return len(ctx)

    entries(1, 0)
    one = count()
    entries(14, 1)
    payment_reverse(payment=Payment.objects.get(idempotency_key="p2"), reason="Bounced", actor=csr_user)
    many = count()
    assert many <= one
    body = _section(supervisor_client, account, **HTMX)
    assert body.count("data-entry=") == 15  # the section shows the latest 15; its own page shows more


def test_methods_section_queries_do_not_grow_with_rows(csr_client, account, django_assert_max_num_queries):
    payment_method_add(account=account, kind="other", description="Cash 0")
    with CaptureQueriesContext(connection) as ctx:
        _section(csr_client, account, key="payment-methods", **HTMX)
    for i in range(1, 15):
        method = payment_method_add(account=account, kind="other", description=f"Cash {i}")
        if i % 3 == 0:
            from payments.services import payment_method_remove

            payment_method_remove(method=method)
    with django_assert_max_num_queries(len(ctx)):
        body = _section(csr_client, account, key="payment-methods", **HTMX)
    assert body.count("data-method=") == 15


# New payment --------------------------------------------------------------------------------------------


def test_payment_form_shows_the_fixed_currency_today_and_the_default_method(csr_client, account):
    payment_method_add(account=account, kind="other", description="Cheque")
    card = payment_method_add(
        account=account, kind="card", token="tok_visa", brand="Visa", last4="4242", expiry_month=12,
        expiry_year=timezone.localdate().year + 2, make_default=True,
    )  # fmt: skip
    removed = payment_method_add(account=account, kind="other", description="Old bank transfer")
    from payments.services import payment_method_remove

    payment_method_remove(method=removed)
    body = _section(csr_client, account, form="payment", **HTMX)
    assert "Amount in USD" in body
    assert f'value="{timezone.localdate().isoformat()}"' in body
    assert f'<option value="{card.pk}" selected>Visa •••• 4242' in body
    assert "Old bank transfer" not in body
    assert 'name="token"' in body and "autofocus" in body
    assert "card_number" not in body and "cvv" not in body.lower()


def test_payment_posts_through_the_service_and_the_section_says_so(csr_client, csr_user, account):
    old = bill(account, "S-1", "30.00", due=dt.date(2026, 11, 5))
    new = bill(account, "S-2", "50.00")
    response = _pay(csr_client, account, amount="40.00", reference="RCPT-7", statement=new.pk)
    assert response.status_code == 204
    assert response["HX-Trigger"] == "account-changed"
    payment = Payment.objects.get()
    assert (payment.amount, payment.channel, payment.reference, payment.created_by) == (
        D("40.00"), "csr", "RCPT-7", csr_user,
    )  # fmt: skip
    # The chosen statement is settled first.
    assert Statement.objects.get(pk=new.pk).status == "partially_paid"
    assert Statement.objects.get(pk=old.pk).status == "open"
    assert _balance(account) == D("40.00")
    body = _section(csr_client, account, **HTMX)
    assert "Payment of $40.00 posted." in body
    assert "Payment of $40.00 posted." not in _section(csr_client, account, **HTMX)  # said once


def test_payment_without_javascript_lands_back_on_the_account_page(csr_client, account):
    response = _pay(csr_client, account, htmx=False, amount="12.50")
    assert response.status_code == 302
    assert response["Location"] == f"/accounts/{account.number}/#section-payments"
    page = csr_client.get(response["Location"]).content.decode()
    assert "Payment of $12.50 posted." in page


def test_the_form_opens_on_its_own_page_without_javascript(csr_client, account):
    response = csr_client.get(reverse("account-section", args=[account.number, "payments"]) + "?form=payment")
    body = response.content.decode()
    assert response.status_code == 200
    assert "<h1" in body and "data-payment-form" in body
    assert "hx-post" not in body.split("data-payment-form")[0].rsplit("<form", 1)[-1]


def test_double_submit_makes_one_payment(csr_client, account):
    token = _token(_section(csr_client, account, form="payment", **HTMX))
    assert _pay(csr_client, account, token=token).status_code == 204
    assert _pay(csr_client, account, token=token).status_code == 204
    assert Payment.objects.count() == 1
    assert _balance(account) == D("-40.00")
    assert "This payment of $40.00 was already recorded: nothing more was posted." in _section(
        csr_client, account, **HTMX
    )
    # The same token with another amount is refused; the form gets a fresh token.
    response = _pay(csr_client, account, token=token, amount="41.00")
    body = response.content.decode()
    assert "This form was already used for a payment of $40.00. Nothing more was posted." in body
    assert _token(body) != token
    assert Payment.objects.count() == 1


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"amount": "0"}, "amount", "The amount must be more than zero."),
        ({"amount": "-5.00"}, "amount", "The amount must be more than zero."),
        ({"amount": "10.123"}, "amount", "USD amounts have at most 2 decimal places."),
        ({"amount": "ten"}, "amount", "Enter the amount as a number, e.g. 20.00."),
        ({"amount": ""}, "amount", "Enter the amount received."),
        ({"payment_date": "2999-01-01"}, "payment_date", "A payment cannot be dated in the future."),
        ({"payment_date": "yesterday"}, "payment_date", "Enter a date."),
    ],
)
def test_bad_payment_inputs_are_shown_at_their_field(csr_client, account, fields, field, message):
    response = _pay(csr_client, account, reference="KEEP-ME", **fields)
    body = response.content.decode()
    assert response.status_code == 200  # htmx: the form with its errors, in place
    assert _field_error(body, field) == message
    assert 'aria-invalid="true"' in body
    assert 'value="KEEP-ME"' in body  # nothing typed is lost
    assert Payment.objects.count() == 0


def test_bad_payment_without_javascript_is_a_400_page(csr_client, account):
    response = _pay(csr_client, account, htmx=False, amount="0")
    assert response.status_code == 400
    assert _field_error(response.content.decode(), "amount") == "The amount must be more than zero."


def test_a_card_number_in_the_reference_is_refused_and_not_shown_back(csr_client, account):
    response = _pay(csr_client, account, reference=f"paid with {CARD}")
    body = response.content.decode()
    assert "This looks like a full card number." in _field_error(body, "reference")
    assert CARD not in body and CARD.replace(" ", "") not in body
    assert Payment.objects.count() == 0


@pytest.mark.parametrize("name", ["cvv", "card_cvc", "card_number", "cardNumber", "pan", "security_code"])
def test_card_data_fields_are_refused_without_echo(csr_client, account, name, caplog):
    response = _pay(csr_client, account, **{name: "4242424242424242" if "num" in name.lower() else "123"})
    body = response.content.decode()
    assert "Card numbers and security codes are never entered here." in body
    assert "4242424242424242" not in body and 'value="123"' not in body
    assert Payment.objects.count() == 0
    assert "4242424242424242" not in caplog.text and "123" not in caplog.text.replace(account.number, "")


def test_a_removed_method_or_another_accounts_statement_is_refused(csr_client, account):
    method = payment_method_add(account=account, kind="other", description="Cheque")
    from payments.services import payment_method_remove

    payment_method_remove(method=method)
    other = AccountFactory()
    foreign = bill(other, "S-9", "20.00")
    body = _pay(csr_client, account, method=method.pk, statement=foreign.pk).content.decode()
    assert (
        _field_error(body, "method")
        == "That method cannot be used: it was removed or is another account&#x27;s."
    )
    assert _field_error(body, "statement") == "Choose one of this account&#x27;s open statements."
    assert Payment.objects.count() == 0


def test_a_service_refusal_lands_on_the_form(csr_client, account):
    account.status = "closed"
    account.save()
    body = _pay(csr_client, account).content.decode()
    assert f"Account {account.number} is closed." in body
    assert Payment.objects.count() == 0


def test_a_forged_token_is_refused(csr_client, account):
    body = _pay(csr_client, account, token="forged").content.decode()
    assert "This form is not valid any more." in body
    assert Payment.objects.count() == 0


# Reversal -----------------------------------------------------------------------------------------------


def test_reverse_a_payment(csr_client, csr_user, account):
    payment, _ = payment_post(
        account=account, amount="25.00", currency="USD", idempotency_key="p", actor=csr_user
    )
    body = _section(csr_client, account, **HTMX)
    assert f'data-reverse="{payment.pk}"' in body
    url = reverse("payment-reverse", args=[account.number, payment.pk])
    refused = csr_client.post(url, {"reason": ""}, **HTMX).content.decode()
    assert _field_error(refused, "reason") == "Say why the payment is reversed."
    assert f'<details class="row-action" open data-reverse="{payment.pk}">' in refused
    response = csr_client.post(url, {"reason": "Cheque bounced"}, **HTMX)
    assert response.status_code == 204 and response["HX-Trigger"] == "account-changed"
    payment.refresh_from_db()
    assert payment.status == "reversed" and payment.reversal_reason == "Cheque bounced"
    assert _balance(account) == D("0.00")
    body = _section(csr_client, account, **HTMX)
    assert "Payment of $25.00 reversed." in body
    # Reversing again is refused with the service's message.
    again = csr_client.post(url, {"reason": "Twice"})
    assert again.status_code == 409
    assert "This payment is already reversed." in again.content.decode()
    assert Payment.objects.get().status == "reversed"


def test_reversing_another_accounts_payment_is_404(csr_client, csr_user, account):
    other = AccountFactory()
    payment, _ = payment_post(
        account=other, amount="5.00", currency="USD", idempotency_key="p", actor=csr_user
    )
    response = csr_client.post(reverse("payment-reverse", args=[account.number, payment.pk]), {"reason": "x"})
    assert response.status_code == 404


# New adjustment -----------------------------------------------------------------------------------------


def test_adjustment_form_tells_the_limit_and_lists_active_reasons(csr_client, account, reason, csr_limit):
    AdjustmentReason.objects.create(code="old", name="Retired reason", active=False)
    AdjustmentReason.objects.create(code="fee", name="Late fee", direction="debit")
    body = _section(csr_client, account, form="adjustment", **HTMX)
    assert "Up to $25.00 posts at once; above it waits for a supervisor." in body
    assert "Goodwill credit" in body and "Late fee (debits only)" in body
    assert "Retired reason" not in body


def test_adjustment_without_a_limit_says_everything_waits(csr_client, account, reason):
    body = _section(csr_client, account, form="adjustment", **HTMX)
    assert "Every adjustment you make waits for a supervisor’s approval before it posts." in body


def test_adjustment_within_the_limit_posts(csr_client, account, reason, csr_limit):
    response = _adjust(csr_client, account, reason, amount="25.00")
    assert response.status_code == 204 and response["HX-Trigger"] == "account-changed"
    assert Adjustment.objects.get().status == "posted"
    assert _balance(account) == D("-25.00")
    assert "Credit adjustment of $25.00 posted." in _section(csr_client, account, **HTMX)


def test_adjustment_above_the_limit_waits(csr_client, account, reason, csr_limit):
    assert _adjust(csr_client, account, reason, amount="25.01").status_code == 204
    assert Adjustment.objects.get().status == "pending"
    assert _balance(account) == D(0)
    body = _section(csr_client, account, **HTMX)
    assert (
        "Credit adjustment of $25.01 is waiting for a supervisor’s approval: it posts once approved." in body
    )
    assert 'data-entry-type="credit" data-status="pending"' in body


def test_adjustment_double_submit_makes_one(csr_client, account, reason, csr_limit):
    token = _token(_section(csr_client, account, form="adjustment", **HTMX))
    _adjust(csr_client, account, reason, token=token)
    _adjust(csr_client, account, reason, token=token)
    assert Adjustment.objects.count() == 1
    assert "was already recorded" in _section(csr_client, account, **HTMX)


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"amount": "0"}, "amount", "The amount must be more than zero."),
        ({"amount": "1.001"}, "amount", "USD amounts have at most 2 decimal places."),
        (
            {"direction": "sideways"},
            "direction",
            "Select a valid choice. sideways is not one of the available choices.",
        ),
        ({"reason": ""}, "reason", "Choose a reason."),
        ({"note": f"card {CARD}"}, "note", None),
    ],
)
def test_bad_adjustment_inputs(csr_client, account, reason, csr_limit, fields, field, message):
    body = _adjust(csr_client, account, reason, **fields).content.decode()
    if message:
        assert _field_error(body, field) == message
    else:
        assert "This looks like a full card number." in _field_error(body, field)
        assert CARD not in body
    assert Adjustment.objects.count() == 0


def test_a_reason_for_the_other_direction_is_refused(csr_client, account, csr_limit):
    fee = AdjustmentReason.objects.create(code="fee", name="Late fee", direction="debit")
    body = _adjust(csr_client, account, fee, direction="credit").content.decode()
    assert _field_error(body, "reason") == "Late fee is for debit only."
    assert Adjustment.objects.count() == 0


def test_an_adjustment_for_another_accounts_statement_is_refused(csr_client, account, reason):
    foreign = bill(AccountFactory(), "S-9", "20.00")
    body = _adjust(csr_client, account, reason, statement=foreign.pk).content.decode()
    assert _field_error(body, "statement") == "Choose one of this account&#x27;s statements."
    assert Adjustment.objects.count() == 0


# Payment methods ----------------------------------------------------------------------------------------


def _add_method(client, account, htmx=True, **fields):
    return client.post(reverse("payment-method-add", args=[account.number]), fields, **(HTMX if htmx else {}))


def _card(**fields):
    year = str(timezone.localdate().year + 2)
    return {"kind": "card", "token": "tok_1Nabc", "brand": "Visa", "last4": "4242", "expiry_month": "8",
            "expiry_year": year, "holder": "Ana Rivera"} | fields  # fmt: skip


def test_methods_section_lists_methods_with_default_and_removed(csr_client, account):
    year = timezone.localdate().year + 2
    payment_method_add(account=account, kind="card", token="tok_a", brand="Visa", last4="4242",
                       expiry_month=8, expiry_year=year, holder="Ana Rivera")  # fmt: skip
    old = payment_method_add(account=account, kind="bank_account", last4="6789", bank_name="First Bank")
    from payments.services import payment_method_remove

    payment_method_remove(method=old)
    body = _section(csr_client, account, key="payment-methods", **HTMX)
    assert "Visa" in body and "4242" in body and f"expires 08/{year}" in body and "Ana Rivera" in body
    assert "data-default>Default</span>" in body
    removed = body.split("Removed</h3>")[1]
    assert "First Bank •••• 6789" in removed and "data-removed" in removed
    assert body.count('data-action="set-default"') == 0  # the only usable one is the default


def test_card_form_explains_the_processor_and_has_no_card_number_field(csr_client, account):
    body = _section(csr_client, account, key="payment-methods", form="card", **HTMX)
    assert "card number and security code are entered in the payment processor’s page, never here" in body
    names = set(re.findall(r'name="([^"]+)"', body))
    assert names == {"csrfmiddlewaretoken", "kind", "token", "brand", "last4", "expiry_month", "expiry_year",
                     "holder", "make_default"}  # fmt: skip


def test_add_a_card_and_a_bank_account(csr_client, account):
    response = _add_method(csr_client, account, **_card())
    assert response.status_code == 204 and response["HX-Trigger"] == "account-changed"
    card = PaymentMethod.objects.get()
    assert (card.kind, card.token, card.last4, card.is_default) == ("card", "tok_1Nabc", "4242", True)
    assert "Visa •••• 4242 added as the default method." in _section(
        csr_client, account, key="payment-methods", **HTMX
    )
    response = _add_method(
        csr_client, account, htmx=False, kind="bank_account", last4="1234", bank_name="Chase"
    )
    assert response.status_code == 302
    assert PaymentMethod.objects.filter(kind="bank_account", is_default=False).count() == 1
    assert _add_method(csr_client, account, kind="other", description="Cheques by post").status_code == 204


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        (_card(token=""), "token", "Enter the processor&#x27;s token for the card."),
        (_card(last4="42"), "last4", "Exactly four digits."),
        (_card(expiry_year=str(dt.date.today().year), expiry_month="1"), "expiry_year", None),
        (
            {"kind": "bank_account", "bank_name": "Chase"},
            "token",
            "Enter the processor&#x27;s token or the account&#x27;s last four digits.",
        ),
        ({"kind": "other", "description": ""}, "description", "Say what the method is."),
    ],
)
def test_bad_methods_are_refused_at_their_field(csr_client, account, fields, field, message):
    body = _add_method(csr_client, account, **fields).content.decode()
    if message is None:  # January of this year has passed (or is this month: then the card is still valid)
        if timezone.localdate().month == 1:
            pytest.skip("January cards are still valid in January.")
        message = "The card has expired."
    assert _field_error(body, field) == message
    assert PaymentMethod.objects.count() == 0


def test_a_card_number_as_the_token_is_refused_and_blanked(csr_client, account):
    body = _add_method(csr_client, account, **_card(token=CARD.replace(" ", ""))).content.decode()
    assert "This looks like a full card number." in _field_error(body, "token")
    assert CARD.replace(" ", "") not in body
    assert PaymentMethod.objects.count() == 0


def test_a_cvv_with_a_card_is_refused(csr_client, account):
    body = _add_method(csr_client, account, **_card(cvv="987")).content.decode()
    assert "Card numbers and security codes are never entered here." in body
    assert "987" not in body
    assert PaymentMethod.objects.count() == 0


def test_set_default_and_remove_with_confirmation(csr_client, account):
    first = payment_method_add(account=account, kind="other", description="Cheque")
    second = payment_method_add(account=account, kind="other", description="Cash")
    url = reverse("payment-method-default", args=[account.number, second.pk])
    assert csr_client.post(url, **HTMX).status_code == 204
    second.refresh_from_db()
    assert second.is_default
    remove = reverse("payment-method-remove", args=[account.number, first.pk])
    body = csr_client.post(remove, {}, **HTMX).content.decode()
    assert "Tick the confirmation to remove Cheque." in body
    assert PaymentMethod.objects.get(pk=first.pk).removed_at is None
    assert csr_client.post(remove, {"confirm": "1"}, **HTMX).status_code == 204
    assert PaymentMethod.objects.get(pk=first.pk).removed_at is not None
    # A removed method cannot become the default again.
    refused = csr_client.post(reverse("payment-method-default", args=[account.number, first.pk]), **HTMX)
    assert "A removed payment method cannot be the default." in refused.content.decode()


def test_another_accounts_method_is_404(csr_client, account):
    method = payment_method_add(account=AccountFactory(), kind="other", description="Cash")
    url = reverse("payment-method-remove", args=[account.number, method.pk])
    assert csr_client.post(url, {"confirm": "1"}).status_code == 404


# Permissions --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["payment-create", "adjustment-create", "payment-method-add"],
)
def test_anonymous_users_are_sent_to_log_in(client, account, name):
    response = client.post(reverse(name, args=[account.number]), {"amount": "1"})
    assert response.status_code == 302 and response["Location"].startswith("/login/")
    response = client.get(reverse("adjustment-queue"))
    assert response.status_code == 302 and response["Location"].startswith("/login/")
    assert Payment.objects.count() == 0


def test_customers_get_403(client, account, reason):
    client.force_login(UserFactory(username="customer", role=roles.CUSTOMER))
    assert client.post(reverse("payment-create", args=[account.number]), {"amount": "1"}).status_code == 403
    assert client.get(reverse("adjustment-queue")).status_code == 403
    assert client.get(reverse("account-section", args=[account.number, "payments"])).status_code == 403


def test_csrs_cannot_see_the_queue(csr_client):
    assert csr_client.get(reverse("adjustment-queue")).status_code == 403


def test_csrs_cannot_approve(csr_client, csr_user, account, reason):
    adjustment, _ = adjustment_request(
        account=account, direction="credit", amount="50.00", currency="USD", reason=reason,
        idempotency_key="a", actor=UserFactory(username="other-csr", role=roles.CSR),
    )  # fmt: skip
    assert csr_client.post(reverse("adjustment-approve", args=[adjustment.pk])).status_code == 403
    assert Adjustment.objects.get().status == "pending"


# The supervisors' queue ---------------------------------------------------------------------------------


@pytest.fixture
def pending(csr_user, reason):
    def make(account, amount, key):
        return adjustment_request(
            account=account, direction="credit", amount=amount, currency="USD", reason=reason,
            idempotency_key=key, note=f"note {key}", actor=csr_user,
        )[0]  # fmt: skip

    return make


def test_queue_lists_pending_oldest_first_with_filters(supervisor_client, account, pending):
    other = AccountFactory(name="Other Co")
    a = pending(account, "30.00", "a")
    b = pending(other, "300.00", "b")
    c = pending(account, "60.00", "c")
    body = supervisor_client.get(reverse("adjustment-queue")).content.decode()
    assert re.findall(r'data-pending="(\d+)"', body) == [str(a.pk), str(b.pk), str(c.pk)]
    assert "3 waiting" in body
    assert '<th scope="col" class="num">Amount</th>' in body
    filtered = supervisor_client.get(
        reverse("adjustment-queue"), {"account": account.number}
    ).content.decode()
    assert re.findall(r'data-pending="(\d+)"', filtered) == [str(a.pk), str(c.pk)]
    ranged = supervisor_client.get(
        reverse("adjustment-queue"), {"min_amount": "50", "max_amount": "100"}
    ).content.decode()
    assert re.findall(r'data-pending="(\d+)"', ranged) == [str(c.pk)]
    bad = supervisor_client.get(reverse("adjustment-queue"), {"min_amount": "100", "max_amount": "50"})
    assert "Must not be below" in bad.content.decode()


def test_supervisor_approves(supervisor_client, supervisor_user, account, pending):
    adjustment = pending(account, "40.00", "a")
    url = reverse("adjustment-approve", args=[adjustment.pk])
    response = supervisor_client.post(url, {"approve-comment": "Fine"})
    assert response.status_code == 302 and response["Location"] == reverse("adjustment-queue")
    adjustment.refresh_from_db()
    assert (adjustment.status, adjustment.checker, adjustment.decision_comment) == (
        "posted",
        supervisor_user,
        "Fine",
    )
    assert _balance(account) == D("-40.00")
    body = supervisor_client.get(response["Location"]).content.decode()
    assert "approved and posted" in body and "data-queue-empty" in body
    section = _section(supervisor_client, account, **HTMX)
    assert "Approved by supervisor: “Fine”" in section


def test_reject_needs_a_comment(supervisor_client, account, pending):
    adjustment = pending(account, "40.00", "a")
    url = reverse("adjustment-reject", args=[adjustment.pk])
    response = supervisor_client.post(url, {"reject-comment": ""})
    assert response.status_code == 400
    assert "Required." in response.content.decode()
    assert Adjustment.objects.get().status == "pending"
    assert supervisor_client.post(url, {"reject-comment": "No reason given"}).status_code == 302
    assert Adjustment.objects.get().status == "rejected"
    assert _balance(account) == D(0)
    assert 'data-status="rejected"' in _section(supervisor_client, account, **HTMX)


def test_the_maker_cannot_approve_their_own(supervisor_client, supervisor_user, account, reason):
    adjustment, _ = adjustment_request(
        account=account, direction="credit", amount="999.00", currency="USD", reason=reason,
        idempotency_key="own", actor=supervisor_user,
    )  # fmt: skip
    response = supervisor_client.post(reverse("adjustment-approve", args=[adjustment.pk]), {})
    assert response.status_code == 400
    body = response.content.decode()
    assert "You cannot approve or reject your own adjustment." in body
    assert '<span class="badge badge--neutral">You</span>' in body
    assert Adjustment.objects.get().status == "pending"


def test_a_decided_adjustment_cannot_be_decided_again(supervisor_client, account, pending):
    adjustment = pending(account, "40.00", "a")
    supervisor_client.post(reverse("adjustment-approve", args=[adjustment.pk]), {})
    response = supervisor_client.post(
        reverse("adjustment-reject", args=[adjustment.pk]), {"reject-comment": "x"}
    )
    assert response.status_code == 409
    assert Adjustment.objects.get().status == "posted"


def test_the_section_shows_where_each_entry_stands_at_the_biller(client, csr_user):
    from django.urls import reverse

    from payments.models import ExportItem
    from payments.services import export_answer, payment_post
    from tests.factories import AccountFactory, BillerFactory, BillerReferenceFactory

    biller = BillerFactory(code="telco", name="Telco One")
    account = AccountFactory()
    BillerReferenceFactory(account=account, biller=biller)
    first, _ = payment_post(
        account=account, amount="5.00", currency="USD", idempotency_key="x1", actor=csr_user
    )
    second, _ = payment_post(
        account=account, amount="6.00", currency="USD", idempotency_key="x2", actor=csr_user
    )
    export_answer(biller=biller, export_id=ExportItem.objects.get(payment=first).export_id, accepted=True)
    export_answer(
        biller=biller,
        export_id=ExportItem.objects.get(payment=second).export_id,
        accepted=False,
        reason="Unknown cheque",
    )
    client.force_login(csr_user)
    page = client.get(reverse("account-section", args=[account.number, "payments"])).content.decode()
    assert "Confirmed by Telco One" in page
    assert "Rejected by Telco One: Unknown cheque" in page
    assert page.count('data-entry-export="') == 2
