"""/api/v1/subscriptions/: staff read, billing admins write; a biller reads and creates subscriptions of its
own accounts only; bad input is a 400 with the field and stores nothing; writes honour Idempotency-Key."""

from __future__ import annotations

import datetime as dt

import pytest

from billing_mgmt import roles
from billing_mgmt.models import AuditRecord
from billruns.models import Subscription
from billruns.services import subscription_create, subscription_rate
from tests.billruns import builders as b

LIST = "/api/v1/subscriptions/"
PHONE = "+15550102030"

pytestmark = pytest.mark.django_db


def one(pk: int) -> str:
    return f"{LIST}{pk}/"


def cancel(pk: int) -> str:
    return f"{LIST}{pk}/cancel/"


@pytest.fixture
def alpha(biller_factory):
    return biller_factory(code="alpha")


@pytest.fixture
def beta(biller_factory):
    return biller_factory(code="beta")


@pytest.fixture
def plan():
    plan = b.plan(currency="USD", name="Mobile 30")
    b.recurring(plan, "30.00")
    return plan


@pytest.fixture
def accounts(alpha, beta, make_account):
    return {
        "alpha": make_account(alpha, "A-1", name="Alpha customer"),
        "beta": make_account(beta, "B-1", name="Beta customer"),
        "euro": make_account(alpha, "A-EUR", name="Euro customer"),
    }


@pytest.fixture
def subs(accounts, plan):
    accounts["euro"].billing_profile.currency = "EUR"
    accounts["euro"].billing_profile.save()
    return {
        name: subscription_create(
            account=accounts[name],
            price_plan=plan,
            service_identifier=f"+1555000{i}",
            start_date=dt.date(2026, 6, 1),
            actor=None,
        )
        for i, name in enumerate(["alpha", "beta"])
    }


def stored() -> tuple[int, int]:
    return Subscription.objects.count(), AuditRecord.objects.filter(
        action__startswith="subscription."
    ).count()


def ids(response) -> list[int]:
    assert response.status_code == 200, response.json()
    return [row["id"] for row in response.json()["results"]]


# --- read ---------------------------------------------------------------------------------------------------


def test_staff_read_every_subscription(subs, session_client, django_assert_max_num_queries):
    client = session_client(roles.CSR)

    with django_assert_max_num_queries(6):
        response = client.get(LIST)

    assert ids(response) == [subs["alpha"].pk, subs["beta"].pk]
    row = response.json()["results"][0]
    assert row == {
        "id": subs["alpha"].pk,
        "account": subs["alpha"].account.number,
        "service_identifier": "+15550000",
        "price_plan": subs["alpha"].price_plan.code,
        "currency": "USD",
        "status": "active",
        "start_date": "2026-06-01",
        "end_date": None,
        "billed_through": None,
        "frequency": "monthly",
        "billing_term_scheme": "standard",
        "processing_sequence": 100,
        "tax_jurisdiction": None,
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
    }
    assert ids(client.get(LIST, {"service_identifier": "+15550001"})) == [subs["beta"].pk]
    assert ids(client.get(LIST, {"account": subs["alpha"].account.number})) == [subs["alpha"].pk]
    assert ids(client.get(LIST, {"active_on": "2026-05-31"})) == []
    assert ids(client.get(LIST, {"active_on": "2026-06-01", "status": "active"})) == [
        subs["alpha"].pk,
        subs["beta"].pk,
    ]
    assert client.get(one(subs["beta"].pk)).json()["service_identifier"] == "+15550001"


def test_the_list_stays_at_a_fixed_number_of_queries(
    subs, plan, accounts, session_client, django_assert_max_num_queries
):
    for i in range(10):
        subscription_create(
            account=accounts["alpha"],
            price_plan=plan,
            service_identifier=f"+1777000{i}",
            start_date=dt.date(2026, 6, 1),
            actor=None,
        )
    client = session_client(roles.SUPERVISOR)

    with django_assert_max_num_queries(6):
        response = client.get(LIST)

    assert len(ids(response)) == 12


def test_a_biller_sees_only_subscriptions_of_its_accounts(subs, alpha, biller_client):
    client = biller_client(alpha)

    assert ids(client.get(LIST)) == [subs["alpha"].pk]
    assert client.get(one(subs["alpha"].pk)).status_code == 200
    response = client.get(one(subs["beta"].pk))
    assert response.status_code == 404
    assert ids(client.get(LIST, {"service_identifier": "+15550001"})) == []


def test_anonymous_and_customers_are_refused(subs, api_client, session_client):
    assert api_client.get(LIST).status_code == 401
    assert session_client(roles.CUSTOMER).get(LIST).status_code == 403


# --- create -------------------------------------------------------------------------------------------------


def body(account, plan, **extra) -> dict:
    return {
        "account": account.number,
        "price_plan": plan.code,
        "service_identifier": PHONE,
        "start_date": "2026-06-01",
        **extra,
    }


def test_billing_admin_creates_with_defaults_and_an_idempotency_key(accounts, plan, billing_admin_client):
    accounts["alpha"].billing_profile.billing_frequency = "quarterly"
    accounts["alpha"].billing_profile.save()
    b.price(plan.components.get(), amount="85.00", freq="quarterly")

    response = billing_admin_client.post(
        LIST, body(accounts["alpha"], plan), format="json", HTTP_IDEMPOTENCY_KEY="k1"
    )

    assert response.status_code == 201, response.json()
    created = Subscription.objects.get(service_identifier=PHONE)
    assert response["Location"] == one(created.pk)
    assert (response.json()["frequency"], response.json()["billing_term_scheme"]) == ("quarterly", "standard")
    assert AuditRecord.objects.filter(action="subscription.create", object_id=str(created.pk)).count() == 1

    again = billing_admin_client.post(
        LIST, body(accounts["alpha"], plan), format="json", HTTP_IDEMPOTENCY_KEY="k1"
    )

    assert again.status_code == 201 and again["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == created.pk
    assert Subscription.objects.filter(service_identifier=PHONE).count() == 1


@pytest.mark.parametrize(
    ("case", "field", "message"),
    [
        (
            "currency",
            "price_plan",
            "Price plan Mobile 30 is in USD but account {euro} bills in EUR: choose a plan in EUR.",
        ),
        (
            "overlap",
            "service_identifier",
            "{phone} already has subscription {other} on Mobile 30 from 2026-01-01 with "
            "no end, which overlaps these dates.",
        ),
        ("end-before-start", "end_date", "The end date (2026-05-31) is before the start date (2026-06-01)."),
        ("negative-sequence", "processing_sequence", "Must not be negative."),
        ("unknown-plan", "price_plan", "Object with code=nope does not exist."),
        (
            "prepaid-scheme",
            "billing_term_scheme",
            "Price plan Mobile 30 is normal: its subscriptions take a normal "
            "billing term scheme, not Prepaid.",
        ),
    ],
)
def test_bad_input_is_a_400_with_the_field_and_nothing_is_stored(
    accounts, plan, billing_admin_client, case, field, message
):
    account, extra, other = accounts["alpha"], {}, None
    if case == "currency":
        accounts["euro"].billing_profile.currency = "EUR"
        accounts["euro"].billing_profile.save()
        account = accounts["euro"]
    elif case == "overlap":
        other = subscription_create(
            account=accounts["beta"],
            price_plan=plan,
            service_identifier=PHONE,
            start_date=dt.date(2026, 1, 1),
            actor=None,
        )
    elif case == "end-before-start":
        extra = {"end_date": "2026-05-31"}
    elif case == "negative-sequence":
        extra = {"processing_sequence": -1}
    elif case == "unknown-plan":
        extra = {"price_plan": "nope"}
    elif case == "prepaid-scheme":
        extra = {"billing_term_scheme": "prepaid"}
    before = stored()

    response = billing_admin_client.post(
        LIST, body(account, plan, **extra), format="json", HTTP_IDEMPOTENCY_KEY="k"
    )

    assert response.status_code == 400, response.json()
    expected = message.format(euro=accounts["euro"].number, phone=PHONE, other=other.pk if other else None)
    assert response.json()["error"]["fields"] == {field: [expected]}
    assert stored() == before


def test_a_biller_creates_only_for_its_own_accounts(accounts, plan, alpha, biller_client):
    client = biller_client(alpha)
    before = stored()

    refused = client.post(LIST, body(accounts["beta"], plan), format="json")

    assert refused.status_code == 400
    assert refused.json()["error"]["fields"] == {
        "account": [f"Object with number={accounts['beta'].number} does not exist."]
    }
    assert stored() == before

    response = client.post(LIST, body(accounts["alpha"], plan), format="json")

    assert response.status_code == 201, response.json()
    record = AuditRecord.objects.get(action="subscription.create")
    assert record.actor_label.startswith("api:alpha:")


@pytest.mark.parametrize("role", [roles.CSR, roles.SUPERVISOR])
def test_staff_other_than_billing_admins_cannot_write(subs, accounts, plan, session_client, role):
    client = session_client(role)
    before = stored()
    sub = subs["alpha"]

    responses = [
        client.post(LIST, body(accounts["alpha"], plan, service_identifier="+1999"), format="json"),
        client.patch(one(sub.pk), {"status": "suspended"}, format="json"),
        client.post(cancel(sub.pk), {"end_date": "2026-06-30"}, format="json"),
    ]

    assert [r.status_code for r in responses] == [403, 403, 403]
    assert stored() == before
    assert Subscription.objects.get(pk=sub.pk).status == "active"


def test_a_biller_cannot_change_or_cancel(subs, alpha, biller_client):
    client = biller_client(alpha)
    sub = subs["alpha"]

    for response in (
        client.patch(one(sub.pk), {"status": "suspended"}, format="json"),
        client.post(cancel(sub.pk), {"end_date": "2026-06-30"}, format="json"),
    ):
        assert response.status_code == 403
        assert response.json()["error"]["message"] == (
            "Biller clients read and create subscriptions of their accounts; billing admins change and "
            "cancel them."
        )
    assert Subscription.objects.get(pk=sub.pk).status == "active"


# --- change and cancel --------------------------------------------------------------------------------------


def test_patch_suspends_resumes_and_changes_the_sequence(subs, billing_admin_client):
    sub = subs["alpha"]

    response = billing_admin_client.patch(
        one(sub.pk), {"status": "suspended", "processing_sequence": 7}, format="json"
    )

    assert response.status_code == 200, response.json()
    assert (response.json()["status"], response.json()["processing_sequence"]) == ("suspended", 7)
    assert (
        billing_admin_client.patch(one(sub.pk), {"status": "active"}, format="json").json()["status"]
        == "active"
    )
    actions = (
        AuditRecord.objects.filter(object_id=str(sub.pk)).order_by("pk").values_list("action", flat=True)
    )
    assert list(actions) == ["subscription.create", "subscription.suspend", "subscription.resume"]


@pytest.mark.parametrize(
    ("data", "fields"),
    [
        (
            {"status": "cancelled"},
            {"status": ["Cancel with an end date (the cancel action), not by changing the status."]},
        ),
        (
            {"end_date": "2026-05-01"},
            {"end_date": ["The end date (2026-05-01) is before the start date (2026-06-01)."]},
        ),
        ({"processing_sequence": -5}, {"processing_sequence": ["Must not be negative."]}),
        (
            {"start_date": "2026-06-05"},
            {
                "start_date": [
                    "Periods of this subscription are already rated: its start date cannot move (periods "
                    "are counted from "
                    "it). Cancel it and create a new subscription instead."
                ]
            },
        ),
    ],
)
def test_patch_refuses_and_changes_nothing(subs, billing_admin_client, data, fields):
    sub = subs["alpha"]
    subscription_rate(subscription=sub, bill_as_of=dt.date(2026, 6, 1))
    before = (Subscription.objects.values().get(pk=sub.pk), AuditRecord.objects.count())

    response = billing_admin_client.patch(one(sub.pk), data, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["fields"] == fields
    assert (Subscription.objects.values().get(pk=sub.pk), AuditRecord.objects.count()) == before


def test_cancel_ends_the_subscription_once(subs, billing_admin_client):
    sub = subs["alpha"]
    subscription_rate(subscription=sub, bill_as_of=dt.date(2026, 6, 1))  # June rated in advance

    response = billing_admin_client.post(
        cancel(sub.pk), {"end_date": "2026-06-10"}, format="json", HTTP_IDEMPOTENCY_KEY="c1"
    )

    assert response.status_code == 200, response.json()
    assert (response.json()["status"], response.json()["end_date"]) == ("cancelled", "2026-06-10")
    replay = billing_admin_client.post(
        cancel(sub.pk), {"end_date": "2026-06-10"}, format="json", HTTP_IDEMPOTENCY_KEY="c1"
    )
    assert replay.status_code == 200 and replay["Idempotent-Replayed"] == "true"
    again = billing_admin_client.post(cancel(sub.pk), {"end_date": "2026-06-20"}, format="json")
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "already_cancelled"
    assert AuditRecord.objects.filter(action="subscription.cancel").count() == 1
    missing = billing_admin_client.post(cancel(subs["beta"].pk), {}, format="json")
    assert missing.status_code == 400
    assert missing.json()["error"]["fields"] == {"end_date": ["This field is required."]}
