"""GET /api/v1/accounts/: filters, ordering, pagination, and a bounded number of queries."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.utils import timezone

from accounts.models import Account
from statements.services import transaction_post
from tests.factories import BillerReferenceFactory, ContactFactory

LIST = "/api/v1/accounts/"

pytestmark = pytest.mark.django_db


@pytest.fixture
def biller(biller_factory):
    return biller_factory(code="alpha")


@pytest.fixture
def data(biller, biller_factory, make_account):
    beta = biller_factory(code="beta")
    top = make_account(biller, "TOP-1", name="Globex Holding", type="business")
    kid = make_account(biller, "KID-1", name="Globex Branch", type="business", parent=top, is_paying=False)
    solo = make_account(biller, "SOLO-1", name="Jane Doe", type="consumer", status="suspended")
    solo.billing_profile.currency = "EUR"
    solo.billing_profile.save()
    other = make_account(beta, "B-1", name="Globex at Beta", type="business")
    return {"top": top, "kid": kid, "solo": solo, "other": other, "beta": beta}


def numbers(response) -> list[str]:
    assert response.status_code == 200, response.json()
    return [row["number"] for row in response.json()["results"]]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("name=globex", ["top", "kid"]),
        ("type=consumer", ["solo"]),
        ("status=suspended", ["solo"]),
        ("currency=EUR", ["solo"]),
        ("external_ref=KID-1", ["kid"]),
        ("external_ref=B-1", []),  # another biller's reference finds nothing
        ("biller=beta", ["top", "kid", "solo"]),  # billers cannot filter by biller: ignored
    ],
)
def test_biller_filters(data, biller, biller_client, query, expected):
    response = biller_client(biller).get(f"{LIST}?{query}")

    assert numbers(response) == sorted(data[k].number for k in expected)


def test_filter_by_number_and_parent(data, biller, biller_client):
    client = biller_client(biller)

    assert numbers(client.get(LIST, {"number": data["solo"].number.lower()})) == [data["solo"].number]
    assert numbers(client.get(LIST, {"parent": data["top"].number})) == [data["kid"].number]


def test_filter_updated_since(data, biller, biller_client):
    Account.objects.filter(pk=data["top"].pk).update(updated_at=timezone.now() - dt.timedelta(days=10))
    Account.objects.filter(pk=data["kid"].pk).update(updated_at=timezone.now() - dt.timedelta(days=10))
    since = (timezone.now() - dt.timedelta(days=1)).isoformat()

    response = biller_client(biller).get(LIST, {"updated_since": since})

    assert numbers(response) == [data["solo"].number]


def test_staff_filter_by_biller_and_reference_match_one_reference(data, csr_client):
    BillerReferenceFactory(account=data["top"], biller=data["beta"], external_ref="B-TOP")

    assert numbers(csr_client.get(LIST, {"biller": "beta"})) == sorted(
        [data["top"].number, data["other"].number]
    )
    assert numbers(csr_client.get(LIST, {"biller": "beta", "external_ref": "B-TOP"})) == [data["top"].number]
    # The reference exists, but at the other biller: no match.
    assert numbers(csr_client.get(LIST, {"biller": "alpha", "external_ref": "B-TOP"})) == []
    assert numbers(csr_client.get(LIST, {"external_ref": "TOP-1"})) == [data["top"].number]


def test_invalid_filter_value_is_400_with_field_errors(data, biller, biller_client):
    response = biller_client(biller).get(LIST, {"type": "alien", "updated_since": "yesterday"})

    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {
        "type": ["Select a valid choice. alien is not one of the available choices."],
        "updated_since": ["Enter a valid date/time."],
    }


def test_ordering(data, biller, biller_client):
    response = biller_client(biller).get(LIST, {"ordering": "-name"})

    assert [row["name"] for row in response.json()["results"]] == [
        "Jane Doe",
        "Globex Holding",
        "Globex Branch",
    ]


def test_pagination(data, biller, biller_client):
    client = biller_client(biller)

    first = client.get(LIST, {"page_size": 2}).json()
    second = client.get(LIST, {"page_size": 2, "page": 2}).json()

    assert first["count"] == 3
    assert first["previous"] is None
    assert first["next"] == "http://testserver/api/v1/accounts/?page=2&page_size=2"
    assert len(first["results"]) == 2
    assert second["next"] is None
    assert [r["number"] for r in first["results"] + second["results"]] == sorted(
        data[k].number for k in ("top", "kid", "solo")
    )
    assert client.get(LIST, {"page": 9}).status_code == 404


def _populate(biller, make_account, count: int) -> None:
    parent = make_account(biller)
    for i in range(count):
        account = make_account(biller, parent=parent if i % 2 else None)
        ContactFactory(account=account)
        ContactFactory(account=account)
        transaction_post(account=account, kind="bill", amount=Decimal("10.00"), currency="USD")


def test_list_query_count_does_not_grow_with_the_page(
    biller, biller_client, make_account, django_assert_max_num_queries
):
    _populate(biller, make_account, 25)
    client = biller_client(biller)
    client.get(LIST)  # the key's last-use stamp is written once a minute; keep it out of the count

    # key lookup, count, page, then one query per prefetch: contacts, balances, references, children
    with django_assert_max_num_queries(7):
        response = client.get(LIST)

    assert response.json()["count"] == 26
    assert all(len(row["contacts"]) == 2 for row in response.json()["results"][1:])


def test_staff_list_query_count_does_not_grow_with_the_page(
    biller, csr_client, make_account, django_assert_max_num_queries
):
    _populate(biller, make_account, 25)

    # session, user, groups, count, page, four prefetches
    with django_assert_max_num_queries(9):
        response = csr_client.get(LIST)

    assert response.json()["count"] == 26
