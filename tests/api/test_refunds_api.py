"""/api/v1/refunds/ and /api/v1/write-offs/: staff with the view permissions read every account's, a biller
only the accounts it references; refunds are posted by staff with payments.add_refund and write-offs by
staff with payments.write_off_balance (supervisors, billing admins), each with a required Idempotency-Key
(a retry answers the first); above the credit or the balance, bad input and card data are a 400 naming the
field with nothing posted; a fixed number of queries per page."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

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
from statements.models import AccountBalance, BalanceType, FinancialTransaction
from tests.api.test_payments_api import bill
from tests.security import pii

pytestmark = pytest.mark.django_db
D = Decimal
REFUNDS = "/api/v1/refunds/"
WRITE_OFFS = "/api/v1/write-offs/"


def balance(account) -> Decimal:
    row = AccountBalance.objects.filter(account=account, balance_type=BalanceType.RECEIVABLE).first()
    return row.amount if row else D(0)


def posted() -> tuple[int, int, int, int]:
    return (
        Refund.objects.count(),
        FinancialTransaction.objects.filter(kind="refund").count(),
        WriteOff.objects.count(),
        FinancialTransaction.objects.filter(kind="write_off").count(),
    )


def post(client, url, body, key="key-1"):
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key is not None else {}
    return client.post(url, body, format="json", **headers)


def body(account, **fields):
    return {"account": account.number, "amount": "10.00", "currency": "USD", "reason": "Overpaid", **fields}


@pytest.fixture
def alpha(biller_factory):
    return biller_factory(code="alpha")


@pytest.fixture
def beta(biller_factory):
    return biller_factory(code="beta")


@pytest.fixture
def account(make_account, alpha):
    """Referenced by alpha, with a credit of 30.00 (paid with nothing owed)."""
    account = make_account(alpha, "A-1")
    payment_post(account=account, amount="30.00", currency="USD", idempotency_key="credit-a")
    return account


@pytest.fixture
def owing(make_account, alpha):
    """Referenced by alpha, owing 80.00."""
    account = make_account(alpha, "A-2")
    bill(account, "S-1", "80.00")
    return account


@pytest.fixture
def other(make_account, beta):
    """Referenced by beta only, with a credit of 20.00."""
    account = make_account(beta, "B-1")
    payment_post(account=account, amount="20.00", currency="USD", idempotency_key="credit-b")
    return account


@pytest.fixture
def supervisor(session_client):
    return session_client(roles.SUPERVISOR)


# --- posting refunds ----------------------------------------------------------------------------------------


def test_a_supervisor_refunds_part_of_a_credit(account, session_client, user_factory):
    client = session_client(roles.SUPERVISOR, username="sam")
    method = payment_method_add(account=account, kind="other", description="Bank transfer")

    response = post(client, REFUNDS, body(account, amount="12.50", method=method.pk))

    assert response.status_code == 201, response.json()
    refund = Refund.objects.get()
    assert response.json() == {
        "id": refund.pk,
        "account": account.number,
        "amount": "12.50",
        "currency": "USD",
        "method": "Bank transfer",
        "reason": "Overpaid",
        "created_by": "sam",
        "created_at": response.json()["created_at"],
    }
    assert refund.idempotency_key.startswith("api:user:") and refund.idempotency_key.endswith(":key-1")
    assert refund.transaction.kind == "refund" and refund.transaction.amount == D("12.50")
    assert balance(account) == D("-17.50")
    assert AuditRecord.objects.filter(action="refund.post", object_id=str(refund.pk)).exists()


def test_the_same_key_twice_is_one_refund_and_another_amount_with_it_a_409(account, supervisor):
    first = post(supervisor, REFUNDS, body(account), key="R-1")
    again = post(supervisor, REFUNDS, body(account), key="R-1")
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"] and posted() == (1, 1, 0, 0)
    clash = post(supervisor, REFUNDS, body(account, amount="11.00"), key="R-1")
    assert clash.status_code == 409 and clash.json()["error"]["code"] == "idempotency_key_reused"
    assert posted() == (1, 1, 0, 0) and balance(account) == D("-20.00")


def test_a_refund_above_the_credit_is_refused_and_nothing_posted(account, supervisor):
    response = post(supervisor, REFUNDS, body(account, amount="30.01"))
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "exceeds_credit" and error["fields"] == {"amount": ["At most 30.00."]}
    assert error["message"] == "The account's credit is 30.00 USD: a refund cannot be more."
    assert posted() == (0, 0, 0, 0) and balance(account) == D("-30.00")


def test_an_account_that_owes_has_nothing_to_refund(owing, supervisor):
    response = post(supervisor, REFUNDS, body(owing, amount="1.00"))
    assert response.status_code == 400 and response.json()["error"]["fields"] == {"amount": ["At most 0.00."]}
    assert posted() == (0, 0, 0, 0)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"amount": "0"}, "amount"),
        ({"amount": "-5.00"}, "amount"),
        ({"amount": "1.234"}, "amount"),
        ({"amount": 10.1}, "amount"),
        ({"amount": "ten"}, "amount"),
        ({"currency": "EUR"}, "currency"),
        ({"currency": "XYZ"}, "currency"),
        ({"reason": ""}, "reason"),
        ({"reason": "   "}, "reason"),
        ({"reason": "to card 4111 1111 1111 1111"}, "reason"),
        ({"method": 999999}, "method"),
        ({"method": "card"}, "method"),
        ({"cvv": "123"}, "cvv"),
        ({"card_number": "4111111111111111"}, "card_number"),
        ({"account": ""}, "account"),
    ],
)
def test_bad_refunds_are_a_400_naming_the_field_and_post_nothing(account, supervisor, changes, field):
    response = post(supervisor, REFUNDS, {**body(account), **changes})
    assert response.status_code == 400, response.json()
    assert field in response.json()["error"]["fields"], response.json()
    assert not pii.echoes_test_card(response.content.decode())
    assert posted() == (0, 0, 0, 0)


def test_a_removed_or_another_accounts_method_is_refused(account, other, supervisor):
    removed = payment_method_add(account=account, kind="other", description="Old")
    payment_method_remove(method=removed)
    theirs = payment_method_add(account=other, kind="other", description="Theirs")
    for method in (removed, theirs):
        response = post(supervisor, REFUNDS, body(account, method=method.pk), key=f"m-{method.pk}")
        assert response.status_code == 400 and "method" in response.json()["error"]["fields"]
    assert posted() == (0, 0, 0, 0)


@pytest.mark.parametrize("key", [None, "", "has space"])
def test_posting_a_refund_needs_an_idempotency_key(account, supervisor, key):
    response = post(supervisor, REFUNDS, body(account), key=key)
    assert response.status_code == 400 and "Idempotency-Key" in response.json()["error"]["fields"]
    assert posted() == (0, 0, 0, 0)


def test_an_unknown_account_is_a_404(account, supervisor):
    response = post(supervisor, REFUNDS, {**body(account), "account": "NO-SUCH"})
    assert response.status_code == 404 and "account" in response.json()["error"]["fields"]


# --- posting write-offs -------------------------------------------------------------------------------------


def test_a_supervisor_writes_off_what_is_owed(owing, session_client):
    client = session_client(roles.SUPERVISOR, username="sam")
    response = post(client, WRITE_OFFS, body(owing, amount="80.00", reason="Bankrupt"))
    assert response.status_code == 201, response.json()
    write_off = WriteOff.objects.get()
    assert response.json() == {
        "id": write_off.pk,
        "account": owing.number,
        "amount": "80.00",
        "currency": "USD",
        "reason": "Bankrupt",
        "created_by": "sam",
        "created_at": response.json()["created_at"],
    }
    assert write_off.transaction.amount == D("-80.00") and balance(owing) == D("0.00")
    again = post(client, WRITE_OFFS, body(owing, amount="80.00", reason="Bankrupt"))
    assert again.status_code == 200 and again.json()["id"] == write_off.pk and posted() == (0, 0, 1, 1)


def test_a_write_off_above_the_balance_is_refused_and_nothing_posted(owing, supervisor):
    response = post(supervisor, WRITE_OFFS, body(owing, amount="80.01"))
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "exceeds_balance" and error["fields"] == {"amount": ["At most 80.00."]}
    assert posted() == (0, 0, 0, 0) and balance(owing) == D("80.00")


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"amount": "0"}, "amount"),
        ({"amount": "1.001"}, "amount"),
        ({"currency": "EUR"}, "currency"),
        ({"reason": ""}, "reason"),
        ({"reason": "card 4111-1111-1111-1111 declined"}, "reason"),
        ({"pan": "4111111111111111"}, "pan"),
    ],
)
def test_bad_write_offs_are_a_400_naming_the_field(owing, supervisor, changes, field):
    response = post(supervisor, WRITE_OFFS, {**body(owing), **changes})
    assert response.status_code == 400, response.json()
    assert field in response.json()["error"]["fields"]
    assert not pii.echoes_test_card(response.content.decode())
    assert posted() == (0, 0, 0, 0)


def test_posting_a_write_off_needs_an_idempotency_key(owing, supervisor):
    response = post(supervisor, WRITE_OFFS, body(owing), key=None)
    assert response.status_code == 400 and response.json()["error"]["code"] == "idempotency_key_required"
    assert posted() == (0, 0, 0, 0)


# --- who may post -------------------------------------------------------------------------------------------


def test_who_may_post_refunds(account, alpha, api_client, session_client, biller_client):
    assert post(api_client, REFUNDS, body(account)).status_code == 401
    refused = post(biller_client(alpha), REFUNDS, body(account))
    assert (
        refused.status_code == 403
        and "Biller API clients may not post refunds" in refused.json()["error"]["message"]
    )
    for role in (roles.CSR, roles.CUSTOMER, None):
        assert post(session_client(role), REFUNDS, body(account)).status_code == 403
    assert posted() == (0, 0, 0, 0)
    assert post(session_client(roles.BILLING_ADMIN), REFUNDS, body(account)).status_code == 201


def test_who_may_post_write_offs(owing, alpha, api_client, session_client, biller_client):
    assert post(api_client, WRITE_OFFS, body(owing)).status_code == 401
    assert post(biller_client(alpha), WRITE_OFFS, body(owing)).status_code == 403
    for role in (roles.CSR, roles.CUSTOMER, None):
        assert post(session_client(role), WRITE_OFFS, body(owing)).status_code == 403
    assert posted() == (0, 0, 0, 0)
    assert post(session_client(roles.BILLING_ADMIN), WRITE_OFFS, body(owing)).status_code == 201


# --- reading ------------------------------------------------------------------------------------------------


@pytest.fixture
def entries(account, other, owing, supervisor_user):
    mine = refund_post(
        account=account, amount="5.00", currency="USD", reason="Overpaid", idempotency_key="r-a",
        actor=supervisor_user,
    )[0]  # fmt: skip
    theirs = refund_post(
        account=other, amount="4.00", currency="USD", reason="Overpaid", idempotency_key="r-b",
        actor=supervisor_user,
    )[0]  # fmt: skip
    written = write_off_post(
        account=owing, amount="8.00", currency="USD", reason="Bankrupt", idempotency_key="w-a",
        actor=supervisor_user,
    )[0]  # fmt: skip
    return mine, theirs, written


def test_staff_list_every_refund_and_write_off_newest_first(entries, supervisor, account, other):
    mine, theirs, written = entries
    rows = supervisor.get(REFUNDS).json()["results"]
    assert [r["id"] for r in rows] == [theirs.pk, mine.pk]
    assert rows[1]["created_by"] == "supervisor" and rows[1]["amount"] == "5.00"
    assert [r["id"] for r in supervisor.get(f"{REFUNDS}?account={other.number}").json()["results"]] == [
        theirs.pk
    ]
    assert supervisor.get(f"{REFUNDS}?account=NOPE").json()["results"] == []
    rows = supervisor.get(WRITE_OFFS).json()["results"]
    assert [(r["id"], r["amount"], r["created_by"]) for r in rows] == [(written.pk, "8.00", "supervisor")]


def test_a_biller_sees_only_its_accounts_without_who_entered_them(entries, alpha, beta, biller_client):
    mine, theirs, written = entries
    rows = biller_client(alpha).get(REFUNDS).json()["results"]
    assert [r["id"] for r in rows] == [mine.pk] and rows[0]["created_by"] is None
    assert [r["id"] for r in biller_client(beta).get(REFUNDS).json()["results"]] == [theirs.pk]
    assert [r["id"] for r in biller_client(alpha).get(WRITE_OFFS).json()["results"]] == [written.pk]
    assert biller_client(beta).get(WRITE_OFFS).json()["results"] == []


def test_who_may_read(entries, api_client, session_client):
    for url in (REFUNDS, WRITE_OFFS):
        assert api_client.get(url).status_code == 401
        assert session_client(roles.CUSTOMER).get(url).status_code == 403
        assert session_client(None).get(url).status_code == 403
        # CSRs have no view_refund / view_writeoff (they see both on the account page).
        assert session_client(roles.CSR).get(url).status_code == 403
        assert session_client(roles.SUPERVISOR).get(url).status_code == 200
        assert session_client(roles.BILLING_ADMIN).get(url).status_code == 200


def test_listing_takes_a_fixed_number_of_queries(
    account, owing, supervisor, alpha, biller_client, supervisor_user
):
    def count(client, url) -> int:
        with CaptureQueriesContext(connection) as queries:
            assert client.get(url).status_code == 200
        return len(queries)

    def make(n, start):
        for i in range(start, start + n):
            refund_post(
                account=account, amount="1.00", currency="USD", reason="r", idempotency_key=f"r{i}",
                actor=supervisor_user,
            )  # fmt: skip
            write_off_post(
                account=owing, amount="1.00", currency="USD", reason="w", idempotency_key=f"w{i}",
                actor=supervisor_user,
            )  # fmt: skip

    make(1, 0)
    few = {url: (count(supervisor, url), count(biller_client(alpha), url)) for url in (REFUNDS, WRITE_OFFS)}
    make(5, 1)
    for url in (REFUNDS, WRITE_OFFS):
        assert (count(supervisor, url), count(biller_client(alpha), url)) == few[url]
        assert max(few[url]) <= 8
