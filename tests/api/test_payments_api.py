"""/api/v1/payments/ and /api/v1/adjustments/: staff read every account's, a biller only the accounts it
references (another's is absent or a 404); payments received elsewhere are posted with a required
Idempotency-Key namespaced by client (a retry answers the first payment); reversals by staff only; bad input
is a 400 naming the field, with nothing stored; a fixed number of queries per page."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import Account
from billing_mgmt import roles
from billing_mgmt.models import AuditRecord
from payments.models import Adjustment, AdjustmentLimit, AdjustmentReason, Payment
from payments.services import adjustment_request, payment_post
from statements.models import FinancialTransaction, Statement
from statements.services import transaction_post
from tests.invoicing.builders import _statement
from tests.security import pii

pytestmark = pytest.mark.django_db
D = Decimal
PAYMENTS = "/api/v1/payments/"
ADJUSTMENTS = "/api/v1/adjustments/"


def detail(payment_id) -> str:
    return f"{PAYMENTS}{payment_id}/"


def reverse_url(payment_id) -> str:
    return f"{PAYMENTS}{payment_id}/reverse/"


def bill(account, number, charges, *, due=dt.date(2026, 11, 15)):
    statement = _statement(account, number=number, new_charges=D(charges), taxes=D(0))
    Statement.objects.filter(pk=statement.pk).update(due_date=due)
    transaction_post(
        account=account,
        kind="bill",
        amount=D(charges),
        currency="USD",
        effective_date=statement.statement_date,
        statement=statement,
        idempotency_key=f"bill:{statement.pk}",
    )
    statement.refresh_from_db()
    return statement


def stored() -> tuple[int, int]:
    return Payment.objects.count(), FinancialTransaction.objects.filter(kind="payment").count()


def post(client, body, key="key-1", **extra):
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key is not None else {}
    return client.post(PAYMENTS, body, format="json", **headers, **extra)


@pytest.fixture
def alpha(biller_factory):
    return biller_factory(code="alpha")


@pytest.fixture
def beta(biller_factory):
    return biller_factory(code="beta")


@pytest.fixture
def account(make_account, alpha):
    return make_account(alpha, "A-1")


@pytest.fixture
def other(make_account, beta):
    return make_account(beta, "B-1")


@pytest.fixture
def csr(session_client):
    return session_client(roles.CSR)


def body(account, **fields):
    return {"account": account.number, "amount": "10.00", "currency": "USD", **fields}


def pay(account, amount="10.00", key=None, **kwargs):
    payment, _ = payment_post(
        account=account, amount=amount, currency="USD", idempotency_key=key or f"k-{amount}-{account.pk}",
        **kwargs,
    )  # fmt: skip
    return payment


# --- reading payments ---------------------------------------------------------------------------------------


def test_staff_list_every_payment_with_its_allocations_newest_first(account, other, csr):
    older = bill(account, "S-1", "50.00", due=dt.date(2026, 11, 5))
    newer = bill(account, "S-2", "30.00", due=dt.date(2026, 11, 15))
    first = pay(account, "60.00", payment_date=dt.date(2026, 11, 2), reference="Cheque 12")
    second = pay(other, "5.00", payment_date=dt.date(2026, 11, 3))

    response = csr.get(PAYMENTS)

    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["id"] for r in results] == [second.pk, first.pk]
    shown = results[1]
    assert shown == {
        "id": first.pk,
        "account": account.number,
        "amount": "60.00",
        "currency": "USD",
        "payment_date": "2026-11-02",
        "reference": "Cheque 12",
        "method": None,
        "channel": "csr",
        "status": "posted",
        "unallocated": "0.00",
        "allocations": [
            {"statement": "S-1", "statement_id": older.pk, "amount": "50.00", "reversed": False},
            {"statement": "S-2", "statement_id": newer.pk, "amount": "10.00", "reversed": False},
        ],
        "reversal_reason": "",
        "reversed_at": None,
        "created_at": shown["created_at"],
    }
    assert csr.get(detail(first.pk)).json() == shown


def test_payments_filter_by_account_status_and_channel(account, other, csr, billing_admin_user):
    a = pay(account, "10.00")
    b = pay(other, "20.00", channel=Payment.Channel.API)
    from payments.services import payment_reverse

    payment_reverse(payment=a, reason="Bounced", actor=billing_admin_user)

    def ids(query):
        response = csr.get(f"{PAYMENTS}?{query}")
        assert response.status_code == 200, response.json()
        return [r["id"] for r in response.json()["results"]]

    assert ids(f"account={account.number}") == [a.pk]
    assert ids(f"account={other.number}") == [b.pk]
    assert ids("status=reversed") == [a.pk]
    assert ids("channel=api") == [b.pk]
    assert ids("account=NOPE") == []
    assert csr.get(f"{PAYMENTS}?status=bogus").status_code == 400


def test_a_biller_sees_only_the_payments_of_accounts_it_references(
    account, other, alpha, beta, biller_client
):
    mine, theirs = pay(account, "10.00"), pay(other, "20.00")

    client = biller_client(alpha)
    assert [r["id"] for r in client.get(PAYMENTS).json()["results"]] == [mine.pk]
    assert client.get(f"{PAYMENTS}?account={other.number}").json()["results"] == []
    assert client.get(detail(mine.pk)).status_code == 200
    hidden = client.get(detail(theirs.pk))
    assert hidden.status_code == 404 and hidden.json()["error"]["code"] == "not_found"
    assert biller_client(beta).get(detail(theirs.pk)).status_code == 200


def test_listing_payments_takes_a_fixed_number_of_queries(account, csr, alpha, biller_client):
    for i in range(3):
        bill(account, f"S-{i}", "10.00")

    def count(client) -> int:
        with CaptureQueriesContext(connection) as queries:
            assert client.get(PAYMENTS).status_code == 200
        return len(queries)

    pay(account, "15.00")
    few_staff, few_biller = count(csr), count(biller_client(alpha))
    for i in range(5):
        pay(account, f"{i + 1}.50")
    assert Payment.objects.count() == 6
    assert count(csr) == few_staff
    assert count(biller_client(alpha)) == few_biller
    assert few_staff <= 8 and few_biller <= 8


# --- posting payments ---------------------------------------------------------------------------------------


def test_a_biller_posts_a_payment_received_elsewhere(account, alpha, biller_client):
    older = bill(account, "S-1", "50.00", due=dt.date(2026, 11, 5))
    chosen = bill(account, "S-2", "30.00", due=dt.date(2026, 11, 15))

    response = post(
        biller_client(alpha),
        body(account, amount="40.00", reference="BANK-991", statement="S-2", payment_date="2026-11-03"),
    )

    assert response.status_code == 201, response.json()
    data = response.json()
    payment = Payment.objects.get()
    assert data["id"] == payment.pk and data["channel"] == "api" and data["status"] == "posted"
    assert [(a["statement"], a["amount"]) for a in data["allocations"]] == [
        ("S-2", "30.00"),
        ("S-1", "10.00"),
    ]
    assert payment.idempotency_key == f"api:biller:{alpha.pk}:key-1"
    assert payment.transaction.amount == D("-40.00") and payment.payment_date == dt.date(2026, 11, 3)
    assert Statement.objects.get(pk=chosen.pk).status == "paid"
    assert Statement.objects.get(pk=older.pk).status == "partially_paid"
    assert AuditRecord.objects.filter(action="payment.post", object_id=str(payment.pk)).exists()


@pytest.mark.parametrize("role", [roles.CSR, roles.SUPERVISOR, roles.BILLING_ADMIN])
def test_staff_with_add_payment_post_payments(account, session_client, role):
    response = post(session_client(role), body(account))
    assert response.status_code == 201, response.json()
    payment = Payment.objects.get()
    assert payment.channel == "api" and payment.created_by.groups.filter(name=role).exists()


def test_the_same_key_twice_is_one_payment_and_another_amount_with_it_a_409(account, alpha, biller_client):
    client = biller_client(alpha)
    first = post(client, body(account), key="PAY-77")
    again = post(client, body(account, reference="retry"), key="PAY-77")

    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]
    assert stored() == (1, 1)

    clash = post(client, body(account, amount="11.00"), key="PAY-77")
    assert clash.status_code == 409 and clash.json()["error"]["code"] == "idempotency_key_reused"
    assert stored() == (1, 1)


def test_two_clients_keys_never_collide(
    make_account, alpha, beta, biller_client, csr, biller_reference_factory
):
    shared = make_account(alpha, "A-9")
    biller_reference_factory(account=shared, biller=beta, external_ref="B-9")

    answers = [post(c, body(shared), key="same") for c in (biller_client(alpha), biller_client(beta), csr)]

    assert [a.status_code for a in answers] == [201, 201, 201]
    assert len({a.json()["id"] for a in answers}) == 3 and stored() == (3, 3)


def test_a_long_key_is_kept_as_a_digest(account, csr):
    key = "k" * 255
    assert post(csr, body(account), key=key).status_code == 201
    assert post(csr, body(account), key=key).status_code == 200
    assert len(Payment.objects.get().idempotency_key) <= 90 and stored() == (1, 1)


@pytest.mark.parametrize(
    ("key", "field"),
    [(None, "Idempotency-Key"), ("", "Idempotency-Key"), ("has space", "Idempotency-Key")],
)
def test_the_idempotency_key_is_required(account, csr, key, field):
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key is not None else {}
    response = csr.post(PAYMENTS, body(account), format="json", **headers)
    assert response.status_code == 400
    assert field in response.json()["error"]["fields"]
    assert stored() == (0, 0)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"amount": "0"}, "amount"),
        ({"amount": "0.00"}, "amount"),
        ({"amount": "-5.00"}, "amount"),
        ({"amount": "1.234"}, "amount"),
        ({"amount": "1.23456"}, "amount"),
        ({"amount": "ten"}, "amount"),
        ({"amount": 10.1}, "amount"),
        ({"amount": None}, "amount"),
        ({"currency": "EUR"}, "currency"),
        ({"currency": "XYZ"}, "currency"),
        ({"currency": "usd"}, "currency"),
        ({"statement": "NOPE"}, "statement"),
        ({"payment_date": "2999-01-01"}, "payment_date"),
        ({"payment_date": "yesterday"}, "payment_date"),
        ({"reference": "4111 1111 1111 1111"}, "reference"),
        ({"cvv": "123"}, "cvv"),
        ({"card_number": "4111111111111111"}, "card_number"),
        ({"pan": "4111111111111111"}, "pan"),
        ({"security_code": "999"}, "security_code"),
        ({"account": ""}, "account"),
    ],
)
def test_bad_payments_are_a_400_naming_the_field_and_store_nothing(
    account, alpha, biller_client, changes, field
):
    bill(account, "S-1", "50.00")
    response = post(biller_client(alpha), {**body(account), **changes})

    assert response.status_code == 400, response.json()
    error = response.json()["error"]
    assert field in error["fields"], error
    assert stored() == (0, 0)


def test_card_fields_are_refused_with_a_clear_message(account, csr):
    response = post(csr, body(account, cvv="123", cardNumber="4111111111111111"))
    error = response.json()["error"]
    assert response.status_code == 400 and error["code"] == "card_data_refused"
    assert set(error["fields"]) == {"cvv", "cardNumber"}
    assert "never accepted" in error["message"]
    assert not pii.echoes_test_card(response.content.decode())


def test_a_payment_to_a_closed_account_is_refused(account, csr):
    Account.objects.filter(pk=account.pk).update(status=Account.Status.CLOSED)
    response = post(csr, body(account))
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "account_closed"
    assert "account" in response.json()["error"]["fields"]
    assert stored() == (0, 0)


def test_a_biller_cannot_pay_another_billers_account_or_statement(
    account, other, alpha, beta, biller_client, make_account
):
    client = biller_client(alpha)
    response = post(client, body(other))
    assert response.status_code == 404 and "account" in response.json()["error"]["fields"]
    assert post(client, {**body(account), "account": "NO-SUCH"}).status_code == 404
    assert stored() == (0, 0)

    # A statement sent by beta for alpha's account is not alpha's to name.
    theirs = bill(account, "S-B", "20.00")
    Statement.objects.filter(pk=theirs.pk).update(biller=beta)
    refused = post(client, body(account, statement="S-B"))
    assert refused.status_code == 400 and "statement" in refused.json()["error"]["fields"]
    assert stored() == (0, 0)


def test_who_may_read_and_post_payments(account, api_client, session_client):
    assert api_client.get(PAYMENTS).status_code == 401
    assert post(api_client, body(account)).status_code == 401
    for role in (roles.CUSTOMER, None):
        client = session_client(role)
        assert client.get(PAYMENTS).status_code == 403
        assert post(client, body(account)).status_code == 403
    for role in (roles.CSR, roles.SUPERVISOR, roles.BILLING_ADMIN):
        assert session_client(role).get(PAYMENTS).status_code == 200
    assert stored() == (0, 0)


# --- reversals ----------------------------------------------------------------------------------------------


def test_staff_reverse_a_payment_once(account, csr):
    statement = bill(account, "S-1", "50.00", due=dt.date(2099, 1, 1))
    payment = pay(account, "50.00")
    assert Statement.objects.get(pk=statement.pk).status == "paid"

    response = csr.post(reverse_url(payment.pk), {"reason": "Cheque bounced"}, format="json")

    assert response.status_code == 200, response.json()
    data = response.json()
    assert data["status"] == "reversed" and data["reversal_reason"] == "Cheque bounced"
    assert data["reversed_at"] is not None and data["allocations"][0]["reversed"] is True
    assert Statement.objects.get(pk=statement.pk).status == "open"

    again = csr.post(reverse_url(payment.pk), {"reason": "again"}, format="json")
    assert again.status_code == 409 and again.json()["error"]["code"] == "already_reversed"
    assert FinancialTransaction.objects.filter(kind="reversal").count() == 1


def test_reversal_needs_a_reason_and_a_known_payment(account, csr):
    payment = pay(account)
    missing = csr.post(reverse_url(payment.pk), {}, format="json")
    assert missing.status_code == 400 and "reason" in missing.json()["error"]["fields"]
    blank = csr.post(reverse_url(payment.pk), {"reason": "  "}, format="json")
    assert blank.status_code == 400
    assert csr.post(reverse_url(999999), {"reason": "x"}, format="json").status_code == 404
    assert Payment.objects.get().status == "posted"


def test_only_staff_with_add_payment_reverse(account, alpha, api_client, session_client, biller_client):
    payment = pay(account)
    data = {"reason": "Bounced"}
    assert api_client.post(reverse_url(payment.pk), data, format="json").status_code == 401
    assert biller_client(alpha).post(reverse_url(payment.pk), data, format="json").status_code == 403
    assert (
        session_client(roles.CUSTOMER).post(reverse_url(payment.pk), data, format="json").status_code == 403
    )
    assert Payment.objects.get().status == "posted"
    response = session_client(roles.SUPERVISOR).post(reverse_url(payment.pk), data, format="json")
    assert response.status_code == 200


# --- adjustments --------------------------------------------------------------------------------------------


@pytest.fixture
def reason():
    return AdjustmentReason.objects.create(code="goodwill", name="Goodwill credit")


@pytest.fixture
def adjustments(account, other, reason, csr_user):
    AdjustmentLimit.objects.create(user=csr_user, currency="USD", max_amount=D("20.00"))

    def make(acct, amount, key, direction="credit"):
        return adjustment_request(
            account=acct, direction=direction, amount=amount, currency="USD", reason=reason,
            idempotency_key=key, note="Sorry", actor=csr_user,
        )[0]  # fmt: skip

    posted = make(account, "5.00", "a1")
    pending = make(account, "50.00", "a2")
    debit = make(account, "3.00", "a3", direction="debit")
    theirs = make(other, "4.00", "a4")
    return posted, pending, debit, theirs


def test_staff_list_every_adjustment(adjustments, session_client, csr_user):
    posted, pending, debit, theirs = adjustments
    client = session_client(roles.SUPERVISOR)

    response = client.get(ADJUSTMENTS)

    assert response.status_code == 200
    rows = {r["id"]: r for r in response.json()["results"]}
    assert set(rows) == {a.pk for a in adjustments}
    assert rows[pending.pk]["status"] == "pending" and rows[pending.pk]["maker"] == csr_user.username
    assert rows[posted.pk]["signed_amount"] == "-5.00" and rows[posted.pk]["amount"] == "5.00"
    assert rows[debit.pk]["signed_amount"] == "3.00"
    assert rows[posted.pk]["reason"] == "goodwill" and rows[posted.pk]["reason_name"] == "Goodwill credit"

    def ids(query):
        return {r["id"] for r in client.get(f"{ADJUSTMENTS}?{query}").json()["results"]}

    assert ids("status=pending") == {pending.pk}
    assert ids("direction=debit") == {debit.pk}
    assert ids(f"account={theirs.account.number}") == {theirs.pk}
    assert ids("reason=goodwill") == {a.pk for a in adjustments}
    assert client.get(f"{ADJUSTMENTS}{pending.pk}/").json()["status"] == "pending"


def test_a_biller_sees_the_posted_adjustments_of_its_accounts(adjustments, alpha, biller_client):
    posted, pending, debit, theirs = adjustments
    client = biller_client(alpha)

    rows = client.get(ADJUSTMENTS).json()["results"]

    assert {r["id"] for r in rows} == {posted.pk, debit.pk}
    assert all(r["maker"] is None and r["checker"] is None and r["decision_comment"] == "" for r in rows)
    assert client.get(f"{ADJUSTMENTS}{posted.pk}/").status_code == 200
    assert client.get(f"{ADJUSTMENTS}{pending.pk}/").status_code == 404
    assert client.get(f"{ADJUSTMENTS}{theirs.pk}/").status_code == 404


def test_who_may_read_adjustments(adjustments, api_client, session_client):
    assert api_client.get(ADJUSTMENTS).status_code == 401
    assert session_client(roles.CUSTOMER).get(ADJUSTMENTS).status_code == 403
    assert session_client(None).get(f"{ADJUSTMENTS}{adjustments[0].pk}/").status_code == 403
    assert session_client(roles.CSR).get(ADJUSTMENTS).status_code == 200
    assert session_client(roles.BILLING_ADMIN).get(ADJUSTMENTS).status_code == 200


def test_listing_adjustments_takes_a_fixed_number_of_queries(account, reason, csr_user, session_client):
    client = session_client(roles.SUPERVISOR)

    def make(n):
        for _ in range(n):
            adjustment_request(
                account=account, direction="credit", amount="1.00", currency="USD", reason=reason,
                idempotency_key=f"q-{Adjustment.objects.count()}", actor=csr_user,
            )  # fmt: skip

    def count() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert client.get(ADJUSTMENTS).status_code == 200
        return len(queries)

    make(1)
    few = count()
    make(5)
    assert count() == few and few <= 8


def test_payment_dates_default_to_today(account, csr):
    response = post(csr, body(account))
    assert response.json()["payment_date"] == timezone.localdate().isoformat()
