"""POST /api/v1/usage-records/bulk/ and GET /api/v1/usage-records/: usage for the rating engine."""

from __future__ import annotations

import datetime as dt

import pytest

from billing_mgmt import roles
from billing_mgmt.models import IdempotencyRecord
from billruns.api.usage_serializers import MAX_USAGE_RECORDS
from billruns.models import UsageRecord
from billruns.services import subscription_rate
from tests.billruns import builders as b

pytestmark = pytest.mark.django_db

BULK = "/api/v1/usage-records/bulk/"
LIST = "/api/v1/usage-records/"
JUNE_1 = dt.date(2026, 6, 1)


def record(external_id="u-1", **overrides):
    data = {
        "external_id": external_id,
        "usage_type": "voice",
        "quantity": "12.5",
        "unit": "min",
        "event_time": "2026-06-05T12:00:00Z",
        "service_identifier": "+1000",
        **overrides,
    }
    return {k: v for k, v in data.items() if v is not None}


@pytest.fixture
def plan():
    plan = b.plan()
    b.usage_component(plan, unit_price="0.10")
    return plan


@pytest.fixture
def alpha(biller_factory):
    return biller_factory(code="alpha")


@pytest.fixture
def beta(biller_factory):
    return biller_factory(code="beta")


@pytest.fixture
def sub_a(alpha, make_account, plan):
    return b.subscription(make_account(alpha, "A-1"), plan, JUNE_1, identifier="+1000")


@pytest.fixture
def sub_b(beta, make_account, plan):
    return b.subscription(make_account(beta, "B-1"), plan, JUNE_1, identifier="+2000")


@pytest.fixture
def client_a(alpha, biller_client):
    return biller_client(alpha)


# --- bulk --------------------------------------------------------------------------------------------------


def test_a_biller_sends_records_and_gets_an_answer_for_each(client_a, sub_a):
    records = [record("u-1"), record("u-2", unit="sec"), record("u-3", quantity="-1"), record("u-1")]

    response = client_a.post(BULK, {"records": records}, format="json")

    assert response.status_code == 200, response.json()
    first, second = UsageRecord.objects.order_by("external_id")
    assert response.json() == {
        "counts": {"created": 1, "duplicate": 1, "rejected": 1, "invalid": 1, "conflict": 0},
        "results": [
            {"index": 0, "external_id": "u-1", "outcome": "created", "id": first.pk, "status": "accepted",
             "code": "", "message": "", "fields": {}},
            {"index": 1, "external_id": "u-2", "outcome": "rejected", "id": second.pk, "status": "rejected",
             "code": "wrong_unit", "message": "Usage type 'voice' is measured in 'min', not 'sec'.",
             "fields": {}},
            {"index": 2, "external_id": "u-3", "outcome": "invalid", "id": None, "status": None,
             "code": "invalid", "message": "The record is not valid; nothing was stored.",
             "fields": {"quantity": ["Must not be negative."]}},
            {"index": 3, "external_id": "u-1", "outcome": "duplicate", "id": first.pk, "status": "accepted",
             "code": "", "message": "", "fields": {}},
        ],
    }  # fmt: skip
    assert (first.source, first.subscription) == ("alpha", sub_a)
    assert second.source == "alpha"


def test_sending_the_same_batch_again_creates_nothing(client_a, sub_a):
    records = [record("u-1"), record("u-2")]
    client_a.post(BULK, {"records": records}, format="json")

    response = client_a.post(BULK, {"records": records}, format="json")

    assert response.status_code == 200
    assert response.json()["counts"] == {
        "created": 0,
        "duplicate": 2,
        "rejected": 0,
        "invalid": 0,
        "conflict": 0,
    }
    assert UsageRecord.objects.count() == 2


def test_the_same_external_id_with_other_content_is_a_conflict(client_a, sub_a):
    client_a.post(BULK, {"records": [record()]}, format="json")

    response = client_a.post(BULK, {"records": [record(quantity="99")]}, format="json")

    (result,) = response.json()["results"]
    assert (result["outcome"], result["code"]) == ("conflict", "external_id_conflict")
    assert result["fields"] == {"quantity": ["Received before with 12.5; this record says 99."]}
    assert UsageRecord.objects.get().quantity == b.D("12.5")


def test_a_biller_cannot_attach_usage_to_another_billers_subscription(client_a, sub_a, sub_b):
    records = [
        record("u-1", service_identifier="+2000"),
        record("u-2", service_identifier=None, subscription_id=sub_b.pk),
    ]

    response = client_a.post(BULK, {"records": records}, format="json")

    results = response.json()["results"]
    assert [(r["outcome"], r["code"], r["message"]) for r in results] == [
        ("rejected", "no_subscription", "No subscription for service '+2000' on 2026-06-05."),
        ("rejected", "unknown_subscription", f"No subscription {sub_b.pk}."),
    ]
    assert not UsageRecord.objects.filter(subscription=sub_b).exists()


def test_a_biller_may_not_choose_another_source(client_a, sub_a):
    response = client_a.post(BULK, {"records": [record()], "source": "beta"}, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {
        "source": ["Leave this out: your records' source is your biller code."]
    }
    assert not UsageRecord.objects.exists()


def test_a_billing_admin_sends_records_under_a_named_source(session_client, sub_a, sub_b):
    admin = session_client(roles.BILLING_ADMIN)
    records = [record("u-1"), record("u-2", service_identifier="+2000")]

    response = admin.post(BULK, {"records": records, "source": "mediation"}, format="json")

    assert response.status_code == 200, response.json()
    assert response.json()["counts"]["created"] == 2
    assert set(UsageRecord.objects.values_list("source", "subscription")) == {
        ("mediation", sub_a.pk),
        ("mediation", sub_b.pk),
    }


def test_staff_must_name_the_source(session_client, sub_a):
    response = session_client(roles.BILLING_ADMIN).post(BULK, {"records": [record()]}, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {
        "source": ["Staff name the source of the records (e.g. 'mediation')."]
    }
    assert not UsageRecord.objects.exists()


@pytest.mark.parametrize("role", [roles.CSR, roles.SUPERVISOR, roles.CUSTOMER])
def test_only_billing_admins_among_people_may_send(session_client, sub_a, role):
    response = session_client(role).post(BULK, {"records": [record()], "source": "x"}, format="json")

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"
    assert not UsageRecord.objects.exists()


def test_anonymous_callers_get_401(api_client, sub_a):
    response = api_client.post(BULK, {"records": [record()]}, format="json")

    assert response.status_code == 401
    assert not UsageRecord.objects.exists()


@pytest.mark.parametrize("body", [{"records": []}, {"records": "u-1"}, {"records": {"a": 1}}, [record()], {}])
def test_a_body_without_a_list_of_records_is_400(client_a, body):
    response = client_a.post(BULK, body, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid"
    assert not UsageRecord.objects.exists()


def test_more_records_than_the_limit_is_413_and_stores_nothing(client_a, sub_a):
    records = [record(f"u-{n}") for n in range(MAX_USAGE_RECORDS + 1)]

    response = client_a.post(BULK, {"records": records}, format="json", HTTP_IDEMPOTENCY_KEY="many")

    assert response.status_code == 413
    error = response.json()["error"]
    assert error["code"] == "too_many_records"
    assert error["fields"] == {
        "records": [f"{MAX_USAGE_RECORDS + 1} records; the limit is {MAX_USAGE_RECORDS}."]
    }
    assert not UsageRecord.objects.exists()
    assert not IdempotencyRecord.objects.exists()


def test_an_idempotency_key_replays_the_first_answer(client_a, sub_a):
    body = {"records": [record()]}

    first = client_a.post(BULK, body, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    again = client_a.post(BULK, body, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    without_key = client_a.post(BULK, body, format="json")

    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    assert first.json()["counts"]["created"] == 1
    assert without_key.json()["counts"]["duplicate"] == 1
    assert UsageRecord.objects.count() == 1


# --- list --------------------------------------------------------------------------------------------------


@pytest.fixture
def stored(client_a, sub_a, sub_b, session_client):
    client_a.post(
        BULK,
        {"records": [
            record("a-1", event_time="2026-06-02T10:00:00Z"),
            record("a-2", event_time="2026-06-20T10:00:00Z"),
            record("a-3", service_identifier="+9999", event_time="2026-06-10T10:00:00Z"),
        ]},
        format="json",
    )  # fmt: skip
    session_client(roles.BILLING_ADMIN, username="feeder").post(
        BULK, {"records": [record("m-1", service_identifier="+2000")], "source": "mediation"}, format="json"
    )


def ids(response) -> list[str]:
    assert response.status_code == 200, response.json()
    return [row["external_id"] for row in response.json()["results"]]


def test_a_biller_lists_only_its_own_records(client_a, stored):
    response = client_a.get(LIST)

    assert ids(response) == ["a-2", "a-3", "a-1"]  # newest event first
    row = response.json()["results"][1]
    record_a3 = UsageRecord.objects.get(external_id="a-3")
    assert row == {
        "id": record_a3.pk,
        "source": "alpha",
        "external_id": "a-3",
        "subscription": None,
        "subscription_ref": "",
        "service_identifier": "+9999",
        "usage_type": "voice",
        "quantity": "12.500000",
        "unit": "min",
        "event_time": "2026-06-10T10:00:00Z",
        "event_date": "2026-06-10",
        "status": "rejected",
        "rejection_code": "no_subscription",
        "rejection_reason": "No subscription for service '+9999' on 2026-06-10.",
        "segment": None,
        "received_at": row["received_at"],
    }
    assert client_a.get(LIST, {"source": "mediation"}).json()["count"] == 3  # not a filter for billers


def test_staff_list_every_source_and_filter(session_client, stored, sub_a):
    csr = session_client(roles.CSR)

    assert ids(csr.get(LIST)) == ["a-2", "a-3", "m-1", "a-1"]
    assert ids(csr.get(LIST, {"source": "mediation"})) == ["m-1"]
    assert ids(csr.get(LIST, {"status": "rejected"})) == ["a-3"]
    assert ids(csr.get(LIST, {"subscription": sub_a.pk})) == ["a-2", "a-1"]
    assert ids(csr.get(LIST, {"service_identifier": "+2000"})) == ["m-1"]
    assert ids(csr.get(LIST, {"event_date_from": "2026-06-05", "event_date_to": "2026-06-10"})) == [
        "a-3",
        "m-1",
    ]
    assert ids(csr.get(LIST, {"rejection_code": "no_subscription"})) == ["a-3"]
    assert ids(csr.get(LIST, {"ordering": "event_time"})) == ["a-1", "m-1", "a-3", "a-2"]


def test_rated_records_show_their_segment_and_filter_by_status(client_a, session_client, stored, sub_a):
    """Rating links a record to its segment without rewriting it; the API still says "rated"."""
    (segment,) = [
        s
        for s in subscription_rate(subscription=sub_a, bill_as_of=dt.date(2026, 7, 1)).created
        if s.lines.exists()
    ]
    csr = session_client(roles.CSR)
    rows = {row["external_id"]: row for row in client_a.get(LIST).json()["results"]}

    assert {k: (r["status"], r["segment"]) for k, r in rows.items()} == {
        "a-1": ("rated", segment.pk),
        "a-2": ("rated", segment.pk),
        "a-3": ("rejected", None),
    }
    assert ids(csr.get(LIST, {"status": "rated"})) == ["a-2", "a-1"]
    assert ids(csr.get(LIST, {"status": "accepted"})) == ["m-1"]  # still waiting for rating
    assert ids(csr.get(LIST, {"status": "rejected"})) == ["a-3"]
    # A resend of a rated record is a duplicate that says so.
    answer = client_a.post(
        BULK, {"records": [record("a-1", event_time="2026-06-02T10:00:00Z")]}, format="json"
    )
    assert answer.json()["results"][0] | {"id": None} == {
        "index": 0, "external_id": "a-1", "outcome": "duplicate", "id": None, "status": "rated", "code": "",
        "message": "", "fields": {},
    }  # fmt: skip


def test_the_list_reads_the_links_with_its_page(client_a, stored, sub_a, django_assert_max_num_queries):
    subscription_rate(subscription=sub_a, bill_as_of=dt.date(2026, 7, 1))
    with django_assert_max_num_queries(3):  # API key, count, page: the links come with the page
        assert len(ids(client_a.get(LIST))) == 3


def test_a_bad_filter_value_is_400(client_a, stored):
    response = client_a.get(LIST, {"event_date_from": "June"})

    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"event_date_from": ["Enter a valid date."]}


def test_customers_cannot_list(session_client, stored):
    assert session_client(roles.CUSTOMER).get(LIST).status_code == 403


def test_the_list_takes_a_fixed_number_of_queries(client_a, sub_a, django_assert_max_num_queries):
    client_a.post(BULK, {"records": [record(f"u-{n}") for n in range(60)]}, format="json")

    with django_assert_max_num_queries(3):  # api key, count, page
        response = client_a.get(LIST, {"page_size": 60})

    assert response.json()["count"] == 60
