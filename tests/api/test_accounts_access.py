"""Who may see and change which accounts: tenancy between billers, staff roles, authentication."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.auth.models import AnonymousUser

from accounts.api.authentication import BillerClient
from accounts.models import Account, BillerApiKey
from accounts.services import biller_api_key_create, biller_api_key_revoke
from billing_mgmt import roles
from billing_mgmt.models import AuditRecord
from statements.services import transaction_post

LIST = "/api/v1/accounts/"

pytestmark = pytest.mark.django_db


def detail(number: str) -> str:
    return f"/api/v1/accounts/{number}/"


def by_ref(ref: str) -> str:
    return f"/api/v1/accounts/by-ref/{ref}/"


@pytest.fixture
def two_billers(biller_factory, make_account):
    """Biller A with two accounts, biller B with one, one account known to both; A and B both use 'X-1'."""
    a = biller_factory(code="alpha")
    b = biller_factory(code="beta")
    a1 = make_account(a, "X-1", name="Alpha One")
    a2 = make_account(a, "A-2", name="Alpha Two")
    b1 = make_account(b, "X-1", name="Beta One")
    shared = make_account(a, "A-S", name="Shared")
    make_account(None, name="Nobody's")  # referenced by no biller
    from tests.factories import BillerReferenceFactory

    BillerReferenceFactory(account=shared, biller=b, external_ref="B-S")
    return {"a": a, "b": b, "a1": a1, "a2": a2, "b1": b1, "shared": shared}


def test_anonymous_gets_401_with_the_error_shape(api_client):
    response = api_client.get(LIST, HTTP_X_REQUEST_ID="req-123")

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Api-Key"
    assert response.json() == {
        "error": {
            "code": "not_authenticated",
            "message": "Authentication credentials were not provided.",
            "fields": {},
            "request_id": "req-123",
        }
    }


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("Api-Key nodot", "Malformed API key."),
        ("Api-Key deadbeef.wrong-secret", "Invalid API key."),
    ],
)
def test_bad_key_gets_401(api_client, header, message):
    api_client.credentials(HTTP_AUTHORIZATION=header)

    response = api_client.get(LIST)

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"
    assert response.json()["error"]["message"] == message


def test_revoked_key_gets_401(api_client, biller_factory, make_account):
    biller = biller_factory()
    make_account(biller)
    key, raw = biller_api_key_create(biller=biller, name="push")
    api_client.credentials(HTTP_AUTHORIZATION=f"Api-Key {raw}")
    assert api_client.get(LIST).status_code == 200

    biller_api_key_revoke(key=key)
    response = api_client.get(LIST)

    assert response.status_code == 401
    assert response.json()["error"] == {
        "code": "not_authenticated",
        "message": "This API key is revoked or its biller is inactive.",
        "fields": {},
        "request_id": response["X-Request-ID"],
    }


def test_key_of_inactive_biller_gets_401(biller_client, biller_factory):
    biller = biller_factory()
    client = biller_client(biller)
    biller.active = False
    biller.save()

    assert client.get(LIST).status_code == 401


def test_biller_list_holds_only_its_own_accounts_and_references(two_billers, biller_client):
    response = biller_client(two_billers["a"]).get(LIST)

    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 3
    assert [r["number"] for r in body["results"]] == sorted(
        [two_billers["a1"].number, two_billers["a2"].number, two_billers["shared"].number]
    )
    shared = next(r for r in body["results"] if r["number"] == two_billers["shared"].number)
    assert shared["references"] == [{"biller": "alpha", "external_ref": "A-S"}]


def test_biller_cannot_retrieve_another_billers_account_by_number(two_billers, biller_client):
    response = biller_client(two_billers["a"]).get(detail(two_billers["b1"].number))

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_biller_retrieves_its_own_account_by_number(two_billers, biller_client):
    response = biller_client(two_billers["a"]).get(detail(two_billers["a1"].number))

    assert response.status_code == 200
    assert response.json()["name"] == "Alpha One"
    assert response.json()["references"] == [{"biller": "alpha", "external_ref": "X-1"}]


@pytest.mark.parametrize("method", ["put", "patch"])
def test_biller_cannot_change_another_billers_account_by_number(two_billers, biller_client, method):
    client = biller_client(two_billers["a"])
    audits = AuditRecord.objects.count()

    response = getattr(client, method)(detail(two_billers["b1"].number), {"name": "Hijacked"}, format="json")

    assert response.status_code == 404
    two_billers["b1"].refresh_from_db()
    assert two_billers["b1"].name == "Beta One"
    assert AuditRecord.objects.count() == audits


def test_by_ref_finds_the_callers_account_even_when_another_biller_uses_the_same_ref(
    two_billers, biller_client
):
    response_a = biller_client(two_billers["a"]).get(by_ref("X-1"))
    response_b = biller_client(two_billers["b"]).get(by_ref("X-1"))

    assert response_a.json()["number"] == two_billers["a1"].number
    assert response_b.json()["number"] == two_billers["b1"].number


def test_by_ref_of_another_billers_reference_is_404(two_billers, biller_client):
    client = biller_client(two_billers["a"])

    assert client.get(by_ref("B-S")).status_code == 404
    assert client.patch(by_ref("B-S"), {"name": "Hijacked"}, format="json").status_code == 404
    assert client.put(by_ref("B-S"), {"name": "Hijacked"}, format="json").status_code == 404
    two_billers["shared"].refresh_from_db()
    assert two_billers["shared"].name == "Shared"


def test_parent_and_children_are_shown_only_when_visible_to_the_biller(
    biller_factory, make_account, biller_client
):
    a = biller_factory(code="alpha")
    b = biller_factory(code="beta")
    parent = make_account(b, "P", name="Parent at B only")
    child = make_account(a, "C", name="Child", parent=parent, is_paying=False)
    grandchild_visible = make_account(a, "G1", parent=child)
    make_account(b, "G2", parent=child)  # a child that A does not see

    body = biller_client(a).get(detail(child.number)).json()

    assert body["parent"] is None
    assert body["children"] == [grandchild_visible.number]
    seen_by_b = biller_client(b).get(detail(parent.number)).json()
    assert seen_by_b["children"] == []  # B does not see the child either


def test_biller_put_of_what_it_read_keeps_a_parent_it_cannot_see(biller_factory, make_account, biller_client):
    a = biller_factory(code="alpha")
    hidden_parent = make_account(biller_factory(code="beta"), "P")
    visible_parent = make_account(a, "VP")
    child = make_account(a, "C", name="Child", parent=hidden_parent, is_paying=False)
    client = biller_client(a)
    read = client.get(detail(child.number)).json()

    response = client.put(detail(child.number), {**read, "name": "Child renamed"}, format="json")

    assert response.status_code == 200, response.json()
    child.refresh_from_db()
    assert (child.name, child.parent) == ("Child renamed", hidden_parent)
    # A parent it can see may still be set explicitly.
    moved = client.patch(detail(child.number), {"parent": visible_parent.number}, format="json")
    assert moved.json()["parent"] == visible_parent.number


def test_staff_see_every_account_with_all_references(two_billers, session_client):
    for role in roles.STAFF_ROLES:
        response = session_client(role).get(LIST)

        assert response.status_code == 200, role
        assert response.json()["count"] == 5
    shared = session_client(roles.CSR, "csr2").get(detail(two_billers["shared"].number)).json()
    assert shared["references"] == [
        {"biller": "alpha", "external_ref": "A-S"},
        {"biller": "beta", "external_ref": "B-S"},
    ]


def test_csr_cannot_write(two_billers, csr_client):
    count = Account.objects.count()

    create = csr_client.post(LIST, {"name": "New"}, format="json")
    patch = csr_client.patch(detail(two_billers["a1"].number), {"name": "Changed"}, format="json")

    assert create.status_code == 403
    assert create.json()["error"]["code"] == "permission_denied"
    assert patch.status_code == 403
    assert Account.objects.count() == count
    two_billers["a1"].refresh_from_db()
    assert two_billers["a1"].name == "Alpha One"


@pytest.mark.parametrize("role", [roles.CUSTOMER, None])
def test_customers_and_users_without_a_role_get_403(two_billers, session_client, role):
    client = session_client(role)

    assert client.get(LIST).status_code == 403
    assert client.get(detail(two_billers["a1"].number)).status_code == 403


def test_staff_cannot_address_by_reference(two_billers, billing_admin_client):
    response = billing_admin_client.get(by_ref("X-1"))

    assert response.status_code == 403


def test_billing_admin_writes_any_account_including_status(two_billers, billing_admin_client):
    response = billing_admin_client.patch(
        detail(two_billers["b1"].number), {"status": "suspended", "name": "Beta Renamed"}, format="json"
    )

    assert response.status_code == 200
    two_billers["b1"].refresh_from_db()
    assert (two_billers["b1"].status, two_billers["b1"].name) == ("suspended", "Beta Renamed")
    audit = AuditRecord.objects.get(action="account.update", object_id=str(two_billers["b1"].pk))
    assert audit.actor_user.username == "user-billing-admin"


def test_api_client_has_no_role():
    # billing_mgmt.roles.has_role must answer False for an API client, not fail on missing groups.
    client = BillerClient(biller=None, key=BillerApiKey())  # type: ignore[arg-type]

    assert roles.has_role(client, roles.BILLING_ADMIN) is False
    assert roles.has_role(AnonymousUser(), roles.CSR) is False


def test_balance_is_the_receivable_balance_as_a_string(biller_factory, make_account, biller_client):
    biller = biller_factory()
    account = make_account(biller, "R-1")
    transaction_post(account=account, kind="bill", amount=Decimal("12.5"), currency="USD")
    empty = make_account(biller, "R-2")

    client = biller_client(biller)

    assert client.get(detail(account.number)).json()["balance"] == {"amount": "12.50", "currency": "USD"}
    assert client.get(detail(empty.number)).json()["balance"] == {"amount": "0.00", "currency": "USD"}
