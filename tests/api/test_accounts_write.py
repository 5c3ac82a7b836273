"""Creating and changing accounts through the API: services do the writes; bad input stores nothing."""

from __future__ import annotations

import pytest

from accounts.models import Account, BillerReference, BillingProfile, Contact
from billing_mgmt.models import AuditRecord

LIST = "/api/v1/accounts/"

pytestmark = pytest.mark.django_db


def by_ref(ref: str) -> str:
    return f"/api/v1/accounts/by-ref/{ref}/"


def row_counts() -> dict[str, int]:
    return {
        "accounts": Account.objects.count(),
        "profiles": BillingProfile.objects.count(),
        "contacts": Contact.objects.count(),
        "references": BillerReference.objects.count(),
        "audit": AuditRecord.objects.count(),
    }


@pytest.fixture
def biller(biller_factory):
    return biller_factory(code="alpha")


@pytest.fixture
def client(biller, biller_client):
    return biller_client(biller)


NEW_ACCOUNT = {
    "name": "Acme Ltd",
    "type": "business",
    "external_ref": "CUST-100",
    "billing_profile": {
        "currency": "EUR",
        "language": "de",
        "locale": "de_DE",
        "bill_cycle_day": 15,
        "billing_frequency": "quarterly",
        "presentment_preference": "paper",
        "payment_preference": "direct_debit",
        "ar_classification": "vip",
        "autopay": True,
        "payment_terms_days": 30,
        "address_line1": "Hauptstr. 1",
        "city": "Berlin",
        "postal_code": "10115",
        "country": "DE",
    },
    "contacts": [
        {"name": "Ann Acme", "email": "ann@acme.example", "phone": "+4930123456", "role": "primary"},
        {"name": "Books", "email": "books@acme.example", "role": "billing_copy"},
    ],
}


def test_biller_creates_an_account_bound_to_its_reference(client, biller):
    response = client.post(LIST, NEW_ACCOUNT, format="json")

    assert response.status_code == 201, response.json()
    body = response.json()
    account = Account.objects.get(number=body["number"])
    assert response["Location"] == f"/api/v1/accounts/{account.number}/"
    assert (account.name, account.type, account.status, account.is_paying) == (
        "Acme Ltd",
        "business",
        "active",
        True,
    )
    assert BillerReference.objects.get(account=account).external_ref == "CUST-100"
    assert BillerReference.objects.get(account=account).biller == biller
    assert body["references"] == [{"biller": "alpha", "external_ref": "CUST-100"}]
    assert body["billing_profile"] == {
        **NEW_ACCOUNT["billing_profile"],
        "address_line2": "",
        "region": "",
    }
    assert body["contacts"] == [
        {"name": "Books", "email": "books@acme.example", "phone": "", "role": "billing_copy"},
        {"name": "Ann Acme", "email": "ann@acme.example", "phone": "+4930123456", "role": "primary"},
    ]
    assert body["balance"] == {"amount": "0.00", "currency": "EUR"}
    assert (body["parent"], body["children"]) == (None, [])
    audit = AuditRecord.objects.get(action="account.create", object_id=str(account.pk))
    assert (audit.actor_type, audit.actor_label) == ("api_client", "api:alpha:test client")
    # The biller reaches it by its reference at once.
    assert client.get(by_ref("CUST-100")).json()["number"] == account.number


def test_biller_must_send_its_reference(client):
    before = row_counts()

    response = client.post(LIST, {"name": "No ref"}, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {
        "external_ref": ["Required: your reference for this account."]
    }
    assert row_counts() == before


def test_bad_input_is_400_with_dotted_field_paths_and_stores_nothing(client):
    before = row_counts()
    bad = {
        "name": "",
        "type": "alien",
        "external_ref": "CUST-1",
        "billing_profile": {"currency": "XYZ", "bill_cycle_day": 31},
        "contacts": [{"name": "Ann", "email": "not-an-email"}],
    }

    response = client.post(LIST, bad, format="json")

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert error["message"] == "The request is not valid."
    assert error["fields"] == {
        "name": ["This field may not be blank."],
        "type": ['"alien" is not a valid choice.'],
        "billing_profile.currency": ["'XYZ' is not an ISO 4217 currency code."],
        "billing_profile.bill_cycle_day": ["Ensure this value is less than or equal to 28."],
        "contacts.0.email": ["Enter a valid email address."],
    }
    assert row_counts() == before


def test_service_rule_violation_is_400_and_stores_nothing(client):
    before = row_counts()

    response = client.post(LIST, {"name": "Orphan", "external_ref": "O-1", "is_paying": False}, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {
        "is_paying": ["A non-paying account needs a paying parent."]
    }
    assert row_counts() == before


def test_two_primary_contacts_are_refused(client):
    before = row_counts()
    contacts = [{"name": "A", "role": "primary"}, {"name": "B", "role": "primary"}]

    response = client.post(LIST, {"name": "X", "external_ref": "P-1", "contacts": contacts}, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"contacts": ["At most one contact can be primary."]}
    assert row_counts() == before


def test_reference_already_used_by_the_biller_is_409_and_stores_nothing(client, biller, make_account):
    make_account(biller, "CUST-100")
    before = row_counts()

    response = client.post(LIST, NEW_ACCOUNT, format="json")

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "conflict"
    assert response.json()["error"]["fields"] == {"external_ref": ["Already used at this biller."]}
    assert row_counts() == before


def test_another_biller_may_use_the_same_reference(client, biller_factory, make_account):
    make_account(biller_factory(code="beta"), "CUST-100")

    assert client.post(LIST, NEW_ACCOUNT, format="json").status_code == 201


def test_parent_must_be_visible_to_the_biller(client, biller, biller_factory, make_account):
    own_parent = make_account(biller, "PARENT")
    foreign = make_account(biller_factory(code="beta"), "THEIRS")
    before = row_counts()

    refused = client.post(
        LIST, {"name": "Kid", "external_ref": "K-1", "parent": foreign.number}, format="json"
    )

    assert refused.status_code == 400
    assert refused.json()["error"]["fields"] == {
        "parent": [f"Object with number={foreign.number} does not exist."]
    }
    assert row_counts() == before

    created = client.post(
        LIST,
        {"name": "Kid", "external_ref": "K-1", "parent": own_parent.number, "is_paying": False},
        format="json",
    )

    assert created.status_code == 201
    assert created.json()["parent"] == own_parent.number
    assert Account.objects.get(number=created.json()["number"]).parent == own_parent
    assert client.get(f"/api/v1/accounts/{own_parent.number}/").json()["children"] == [
        created.json()["number"]
    ]


def test_biller_cannot_change_status_but_may_send_it_unchanged(client, biller, make_account):
    account = make_account(biller, "S-1", name="Before")

    refused = client.patch(by_ref("S-1"), {"status": "closed", "name": "After"}, format="json")
    unchanged = client.put(by_ref("S-1"), {"status": "active", "name": "After"}, format="json")

    assert refused.status_code == 400
    assert refused.json()["error"]["fields"] == {"status": ["Only a billing admin can change the status."]}
    assert unchanged.status_code == 200
    account.refresh_from_db()
    assert (account.status, account.name) == ("active", "After")


def test_update_by_reference_goes_through_the_service(client, biller, make_account):
    account = make_account(biller, "U-1", name="Old name", type="consumer")

    response = client.patch(
        by_ref("U-1"),
        {"name": "New name", "type": "business", "billing_profile": {"currency": "GBP", "city": "Leeds"}},
        format="json",
    )

    assert response.status_code == 200
    assert response.json()["name"] == "New name"
    assert response.json()["billing_profile"]["currency"] == "GBP"
    account.refresh_from_db()
    account.billing_profile.refresh_from_db()
    assert (account.name, account.type) == ("New name", "business")
    assert (account.billing_profile.currency, account.billing_profile.city) == ("GBP", "Leeds")
    audit = AuditRecord.objects.get(action="account.update", object_id=str(account.pk))
    assert audit.before["name"] == "Old name"
    assert audit.after["billing_profile"]["currency"] == "GBP"


def test_put_needs_the_name_and_bad_update_stores_nothing(client, biller, make_account):
    account = make_account(biller, "U-2", name="Kept")
    before = row_counts()

    missing = client.put(by_ref("U-2"), {"type": "business"}, format="json")
    bad_profile = client.patch(
        by_ref("U-2"), {"name": "Changed", "billing_profile": {"currency": "usd"}}, format="json"
    )

    assert missing.status_code == 400
    assert missing.json()["error"]["fields"] == {"name": ["This field is required."]}
    assert bad_profile.status_code == 400
    assert list(bad_profile.json()["error"]["fields"]) == ["billing_profile.currency"]
    account.refresh_from_db()
    assert (account.name, account.type, account.billing_profile.currency) == ("Kept", "consumer", "USD")
    assert row_counts() == before


def test_hierarchy_loop_is_refused(client, biller, make_account):
    top = make_account(biller, "TOP")
    child = make_account(biller, "CHILD", parent=top)

    response = client.patch(by_ref("TOP"), {"parent": child.number}, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"parent": ["Loop in the hierarchy."]}
    top.refresh_from_db()
    assert top.parent is None


def test_billing_admin_creates_an_account_for_a_biller(billing_admin_client, biller):
    response = billing_admin_client.post(
        LIST,
        {"name": "Admin made", "biller": "alpha", "external_ref": "ADM-1", "status": "suspended"},
        format="json",
    )

    assert response.status_code == 201, response.json()
    assert response.json()["status"] == "suspended"
    assert response.json()["references"] == [{"biller": "alpha", "external_ref": "ADM-1"}]


def test_billing_admin_needs_biller_with_reference(billing_admin_client, biller):
    before = row_counts()

    response = billing_admin_client.post(LIST, {"name": "Half", "external_ref": "ADM-2"}, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"biller": ["Give biller and external_ref together."]}
    assert row_counts() == before


def test_billing_admin_creates_an_account_without_biller(billing_admin_client):
    response = billing_admin_client.post(LIST, {"name": "Own customer"}, format="json")

    assert response.status_code == 201
    assert response.json()["references"] == []


def test_biller_may_not_name_another_biller(client, biller_factory):
    biller_factory(code="beta")
    before = row_counts()

    response = client.post(LIST, {"name": "X", "external_ref": "Z-1", "biller": "beta"}, format="json")

    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == ["biller"]
    assert row_counts() == before
