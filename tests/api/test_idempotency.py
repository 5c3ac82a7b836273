"""Idempotency-Key on API writes: a repeat replays the first answer; concurrent repeats write once."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection
from rest_framework.test import APIClient

import accounts.services
from accounts.models import Account, BillerReference
from billing_mgmt.models import IdempotencyRecord
from tests.factories import AccountFactory, BillerFactory, api_key_for

LIST = "/api/v1/accounts/"
BODY = {"name": "Idem Ltd", "external_ref": "IDEM-1", "billing_profile": {"currency": "EUR"}}


@pytest.fixture
def biller(biller_factory):
    return biller_factory(code="alpha")


@pytest.fixture
def client(biller, biller_client):
    return biller_client(biller)


@pytest.mark.django_db
def test_same_key_and_body_replays_the_first_answer(client):
    first = client.post(LIST, BODY, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    again = client.post(LIST, BODY, format="json", HTTP_IDEMPOTENCY_KEY="k-1")

    assert first.status_code == 201
    assert again.status_code == 201
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first
    assert Account.objects.filter(name="Idem Ltd").count() == 1
    record = IdempotencyRecord.objects.get()
    assert (record.key, record.status_code, record.method, record.path) == ("k-1", 201, "POST", LIST)


@pytest.mark.django_db
def test_same_key_with_a_different_body_is_409(client):
    client.post(LIST, BODY, format="json", HTTP_IDEMPOTENCY_KEY="k-1")

    response = client.post(LIST, {**BODY, "name": "Other"}, format="json", HTTP_IDEMPOTENCY_KEY="k-1")

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "idempotency_key_reused"
    assert response.json()["error"]["fields"] == {
        "Idempotency-Key": ["Already used for a different request."]
    }
    assert Account.objects.filter(name="Other").count() == 0
    assert Account.objects.filter(name="Idem Ltd").count() == 1


@pytest.mark.django_db
def test_same_key_on_another_endpoint_is_409(client, biller, make_account):
    make_account(biller, "R-9")
    client.post(LIST, BODY, format="json", HTTP_IDEMPOTENCY_KEY="k-1")

    response = client.patch("/api/v1/accounts/by-ref/R-9/", BODY, format="json", HTTP_IDEMPOTENCY_KEY="k-1")

    assert response.status_code == 409


@pytest.mark.django_db
def test_without_a_key_a_repeat_is_a_new_request(client):
    client.post(LIST, BODY, format="json")

    response = client.post(LIST, BODY, format="json")

    assert response.status_code == 409  # the reference is taken: the first request did write
    assert response.json()["error"]["fields"] == {"external_ref": ["Already used at this biller."]}
    assert IdempotencyRecord.objects.count() == 0


@pytest.mark.django_db
def test_keys_belong_to_one_client(client, biller_factory, biller_client):
    other = biller_client(biller_factory(code="beta"))

    first = client.post(LIST, BODY, format="json", HTTP_IDEMPOTENCY_KEY="shared-key")
    second = other.post(LIST, BODY, format="json", HTTP_IDEMPOTENCY_KEY="shared-key")

    assert (first.status_code, second.status_code) == (201, 201)
    assert first.json()["number"] != second.json()["number"]
    assert "Idempotent-Replayed" not in second


@pytest.mark.django_db
def test_a_failed_request_stores_nothing_and_frees_the_key(client):
    bad = client.post(LIST, {**BODY, "name": ""}, format="json", HTTP_IDEMPOTENCY_KEY="k-2")
    good = client.post(LIST, BODY, format="json", HTTP_IDEMPOTENCY_KEY="k-2")

    assert bad.status_code == 400
    assert good.status_code == 201
    assert Account.objects.filter(name="Idem Ltd").count() == 1
    assert IdempotencyRecord.objects.get().status_code == 201


@pytest.mark.django_db
def test_invalid_key_is_400(client):
    response = client.post(LIST, BODY, format="json", HTTP_IDEMPOTENCY_KEY="x" * 256)

    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == ["Idempotency-Key"]
    assert Account.objects.count() == 0


@pytest.mark.django_db
def test_update_with_a_key_replays(client, biller, make_account):
    account = make_account(biller, "U-1", name="Start")
    url = "/api/v1/accounts/by-ref/U-1/"

    first = client.patch(url, {"name": "Once"}, format="json", HTTP_IDEMPOTENCY_KEY="u-1")
    Account.objects.filter(pk=account.pk).update(name="Changed since")
    again = client.patch(url, {"name": "Once"}, format="json", HTTP_IDEMPOTENCY_KEY="u-1")

    assert again.json() == first.json()
    account.refresh_from_db()
    assert account.name == "Changed since"  # the replay did not write


def _run_in_threads(*targets):
    errors: list[BaseException] = []

    def wrap(fn):
        def run():
            try:
                fn()
            except BaseException as exc:  # noqa: BLE001  (reported by the test)
                errors.append(exc)
            finally:
                connection.close()

        return run

    threads = [threading.Thread(target=wrap(fn)) for fn in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors, errors


@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_with_one_key_write_once(monkeypatch):
    biller = BillerFactory(code="racer")
    raw_key = api_key_for(biller)
    original = accounts.services.account_create

    def slow_create(**kwargs):
        account = original(**kwargs)
        time.sleep(0.5)  # keep the first transaction open while the second request arrives
        return account

    monkeypatch.setattr("accounts.api.views.account_create", slow_create)
    responses = []

    def post():
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Api-Key {raw_key}")
        responses.append(client.post(LIST, BODY, format="json", HTTP_IDEMPOTENCY_KEY="race"))

    _run_in_threads(post, post)

    assert sorted(r.status_code for r in responses) == [201, 201]
    assert responses[0].json() == responses[1].json()
    assert sorted(r.get("Idempotent-Replayed", "-") for r in responses) == ["-", "true"]
    assert Account.objects.count() == 1
    assert BillerReference.objects.count() == 1
    assert IdempotencyRecord.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_creates_of_one_reference_give_one_account_and_one_409(monkeypatch):
    """Both requests pass the service's 'reference taken?' check; the database's unique constraint decides."""
    biller = BillerFactory(code="racer")
    raw_key = api_key_for(biller)
    AccountFactory()  # creates the account number series first: its creation would serialize the two requests
    barrier = threading.Barrier(2, timeout=10)
    original = accounts.services.biller_reference_set

    def reference_set_after_both_checked(**kwargs):
        barrier.wait()
        return original(**kwargs)

    monkeypatch.setattr(accounts.services, "biller_reference_set", reference_set_after_both_checked)
    responses = []

    def post():
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Api-Key {raw_key}")
        responses.append(client.post(LIST, BODY, format="json"))

    _run_in_threads(post, post)

    assert sorted(r.status_code for r in responses) == [201, 409]
    conflict = next(r for r in responses if r.status_code == 409)
    assert conflict.json()["error"]["code"] == "conflict"
    assert Account.objects.filter(name="Idem Ltd").count() == 1
    assert BillerReference.objects.count() == 1
