"""API rate limits per client (billing_mgmt.throttling.ClientRateThrottle): over its rate a client gets 429
with Retry-After; other clients are not affected; the next window lets it in again."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.test import override_settings
from rest_framework.test import APIClient

from billing_mgmt import roles, throttling
from tests.factories import BillerFactory, UserFactory, api_key_for

LOW = {"biller": "3/min", "user": "2/min", "anon": "1/min"}
URL = "/api/v1/statements/"


@pytest.fixture(autouse=True)
def fresh_cache():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def clock(monkeypatch):
    now = {"t": 1_899_999_960.0}  # the start of a minute
    monkeypatch.setattr(throttling, "_now", lambda: now["t"])
    return now


def _biller_client(code: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {api_key_for(BillerFactory(code=code))}")
    return client


@override_settings(API_THROTTLE_RATES=LOW)
def test_a_biller_over_its_rate_gets_429_and_others_do_not(db, clock):
    a, b = _biller_client("rate-a"), _biller_client("rate-b")
    for _ in range(3):
        assert a.get(URL).status_code == 200
    clock["t"] += 15
    refused = a.get(URL)
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "throttled"
    assert int(refused["Retry-After"]) == 45  # the rest of the minute
    assert b.get(URL).status_code == 200  # another biller's client is not affected
    clock["t"] += 45  # the next window
    assert a.get(URL).status_code == 200


@override_settings(API_THROTTLE_RATES=LOW)
def test_each_key_of_a_biller_counts_for_itself_and_writes_count_too(db, clock):
    biller = BillerFactory(code="rate-keys")
    first, second = APIClient(), APIClient()
    first.credentials(HTTP_AUTHORIZATION=f"Api-Key {api_key_for(biller, 'one')}")
    second.credentials(HTTP_AUTHORIZATION=f"Api-Key {api_key_for(biller, 'two')}")
    assert first.post("/api/v1/ingest/bulk/", {}, format="json").status_code == 400
    for _ in range(2):
        assert first.get(URL).status_code == 200
    assert first.post("/api/v1/ingest/bulk/", {}, format="json").status_code == 429
    assert second.get(URL).status_code == 200


@override_settings(API_THROTTLE_RATES=LOW)
def test_logged_in_users_are_limited_per_user(db, clock):
    one, two = APIClient(), APIClient()
    one.force_login(UserFactory(username="rate-csr-1", role=roles.CSR))
    two.force_login(UserFactory(username="rate-csr-2", role=roles.CSR))
    url = "/api/v1/accounts/"
    assert [one.get(url).status_code for _ in range(3)] == [200, 200, 429]
    assert two.get(url).status_code == 200


def test_default_rates_are_far_above_the_ingest_benchmark():
    """F8's bulk ingest: 20,000 records/s in requests of 1,000 from one key = 20 requests/s; the defaults must
    leave room (a limit is for runaway clients, not for the product's own benchmark)."""
    from django.conf import settings

    count, window = throttling.parse_rate(settings.API_THROTTLE_RATES["biller"])
    assert count / window >= 3 * 20
    count, window = throttling.parse_rate(settings.API_THROTTLE_RATES["user"])
    assert count / window >= 10


def test_parse_rate():
    assert throttling.parse_rate("6000/min") == (6000, 60)
    assert throttling.parse_rate("10/s") == (10, 1)
    assert throttling.parse_rate("100/hour") == (100, 3600)
