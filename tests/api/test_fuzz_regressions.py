"""Regressions for what the API fuzz test (tests/security/test_api_fuzz.py) found: each test sends the request
that failed (a 5xx, or an answer the schema did not describe) and checks the fixed answer, against the schema
where the failure was a schema mismatch."""

from __future__ import annotations

import datetime as dt

import pytest
import requests
import schemathesis
from django.utils import timezone
from rest_framework.test import APIClient
from schemathesis.core.transport import Response

from billing_mgmt import roles
from billruns.models import RunDefinition, RunType
from billruns.services import billrun_create, run_definition_save
from disputes.services import case_open
from tests.billruns import builders as b
from tests.disputes.builders import processes

pytestmark = pytest.mark.django_db


@pytest.fixture
def openapi():
    """The app's own schema (as the fuzz test loads it), to hold answers to."""
    body = APIClient().get("/api/schema/", {"format": "json"}).json()
    return body, schemathesis.openapi.from_dict(body)


def conforms(openapi, method: str, path: str, response) -> None:
    """Raise if the Django test response is not what the schema documents for ``method path`` (status code,
    content type, body)."""
    body, schema = openapi
    documented = body["paths"][path][method.lower()]["responses"]
    assert str(response.status_code) in documented, (response.status_code, sorted(documented))
    media_types = set(documented[str(response.status_code)].get("content", {}))
    assert response["Content-Type"].split(";")[0] in media_types, (response["Content-Type"], media_types)
    answer = Response(
        status_code=response.status_code,
        headers={name.lower(): [value] for name, value in response.headers.items()},
        content=response.content,
        request=requests.Request(method, f"http://localhost{path}").prepare(),
        elapsed=0.0,
        verify=True,
    )
    schema[path][method].validate_response(answer)


@pytest.fixture
def biller_api(biller_client, make_account):
    from tests.factories import BillerFactory

    biller = BillerFactory(code="fuzz-regress")
    account = make_account(biller=biller, ref="FR-1")
    return biller_client(biller), account


# --- the schema lists the answers every operation can give -------------------------------------------------


def test_every_operation_documents_429_lists_document_404_and_idempotent_writes_400(openapi):
    body, _ = openapi
    operations = [
        (path, method, op)
        for path, methods in body["paths"].items()
        for method, op in methods.items()
        if method in ("get", "put", "post", "patch", "delete")
    ]
    assert len(operations) > 50
    for path, method, op in operations:
        names = {(p["in"], p["name"]) for p in op.get("parameters", [])}
        assert "429" in op["responses"], (method, path)
        assert "Retry-After" in op["responses"]["429"]["headers"], (method, path)
        if ("query", "page") in names:
            assert "404" in op["responses"], (method, path)
        if ("header", "Idempotency-Key") in names:
            assert "400" in op["responses"], (method, path)
        assert not any(code.startswith("5") for code in op["responses"] if code != "503"), (method, path)


def test_a_page_that_does_not_exist_is_a_documented_404(openapi, biller_api):
    # Found: GET /api/v1/accounts/?page=0 answered 404 "Invalid page.", which the schema did not list.
    client, _ = biller_api
    response = client.get("/api/v1/accounts/", {"page": "0"})

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    conforms(openapi, "GET", "/api/v1/accounts/", response)


def test_a_malformed_idempotency_key_is_a_documented_400(openapi, billing_admin_client):
    # Found: POST /api/v1/billing-runs/0/resume/ with a key of spaces answered an undocumented 400.
    response = billing_admin_client.post("/api/v1/billing-runs/0/resume/", HTTP_IDEMPOTENCY_KEY="a b")

    assert response.status_code == 400
    assert "Idempotency-Key" in response.json()["error"]["fields"]
    conforms(openapi, "POST", "/api/v1/billing-runs/{number}/resume/", response)


# --- Django's own answers on API paths are JSON -------------------------------------------------------------


def test_an_api_url_no_route_matches_answers_the_json_error_shape(openapi, biller_api):
    # Found: GET /api/v1/payments/null%2Cnull/ (the id is a number) answered Django's HTML 404 page.
    client, _ = biller_api
    response = client.get("/api/v1/payments/null%2Cnull/")

    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"]["code"] == "not_found"
    conforms(openapi, "GET", "/api/v1/payments/{id}/", response)


def test_a_page_url_no_route_matches_keeps_the_html_404(csr_client):
    response = csr_client.get("/no-such-page/at-all/")

    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")


def test_a_form_body_with_too_many_fields_is_a_json_400(openapi, billing_admin_client):
    # Found: POST /api/v1/billing-runs/ with a form body of more than 1,000 fields answered Django's HTML 400.
    body = "&".join(f"billing_frequencies=f{i}" for i in range(1100))
    response = billing_admin_client.post(
        "/api/v1/billing-runs/", body, content_type="application/x-www-form-urlencoded"
    )

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid"
    conforms(openapi, "POST", "/api/v1/billing-runs/", response)


def test_an_unexpected_error_in_an_api_view_answers_the_json_error_shape(monkeypatch, billing_admin_user):
    from disputes.api import views

    def explode(self):
        raise RuntimeError("boom")

    monkeypatch.setattr(views.ServiceProcessListView, "get_queryset", explode)
    client = APIClient(raise_request_exception=False)
    client.force_login(billing_admin_user)
    response = client.get("/api/v1/service-processes/")

    assert response.status_code == 500
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"]["code"] == "server_error"


# --- NUL characters -----------------------------------------------------------------------------------------


def test_a_nul_character_in_a_looked_up_field_is_a_400_not_a_500(openapi, biller_api):
    # Found: POST /api/v1/accounts/ {"name": ..., "parent": "\u0000..."} answered 500 (the driver refuses
    # NUL characters).
    client, _ = biller_api
    response = client.post("/api/v1/accounts/", {"name": "Nul Parent", "parent": "A\u0000"}, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "parse_error"  # refused by the JSON parser, before any query
    conforms(openapi, "POST", "/api/v1/accounts/", response)


def test_a_nul_character_in_a_path_names_nothing(openapi, biller_api):
    client, _ = biller_api
    response = client.get("/api/v1/accounts/A%00/")

    assert response.status_code == 404
    conforms(openapi, "GET", "/api/v1/accounts/{number}/", response)


# --- date-time filters with UTC offsets PostgreSQL does not take --------------------------------------------


@pytest.fixture
def staff_case(billing_admin_client, make_account, csr_user):
    account = make_account()
    case, _ = case_open(account=account, process=processes()["billing-inquiry"], subject="Why?",
                        channel="csr", actor=csr_user)  # fmt: skip
    return billing_admin_client, case


def test_a_date_time_filter_with_a_large_utc_offset_filters_by_that_instant(openapi, staff_case):
    # Found: GET /api/v1/cases/?updated_since=4743-01-14T05:49:48+22:54 answered 500 (PostgreSQL takes offsets
    # up to 15:59); in UTC it is an ordinary instant.
    client, case = staff_case
    offset = dt.timezone(dt.timedelta(hours=19, minutes=38))
    before = (timezone.now() - dt.timedelta(hours=1)).astimezone(offset).isoformat()
    after = (timezone.now() + dt.timedelta(hours=1)).astimezone(offset).isoformat()

    included = client.get("/api/v1/cases/", {"updated_since": before})
    excluded = client.get("/api/v1/cases/", {"updated_since": after})

    assert included.status_code == 200 and excluded.status_code == 200
    assert [row["number"] for row in included.json()["results"]] == [case.number]
    assert excluded.json()["results"] == []
    conforms(openapi, "GET", "/api/v1/cases/", included)


def test_a_date_time_filter_out_of_range_in_utc_is_a_400(openapi, staff_case):
    client, _ = staff_case
    response = client.get("/api/v1/usage-records/", {"received_since": "0001-01-01T00:00:00+05:00"})

    assert response.status_code == 400
    assert "received_since" in response.json()["error"]["fields"]
    conforms(openapi, "GET", "/api/v1/usage-records/", response)


# --- bodies the schema described wrongly --------------------------------------------------------------------


def test_a_billing_run_not_yet_executed_has_blank_stages_and_matches_the_schema(
    openapi, billing_admin_client
):
    # Found: GET /api/v1/billing-runs/BR-000001/ sent "target_stage": "" where the schema allowed stages only.
    run_definition_save(
        definition=RunDefinition(name="Fuzz monthly", run_type=RunType.NORMAL, bill_as_of_day=1,
                                 due_proximity_min_days=-5, due_proximity_max_days=10)
    )  # fmt: skip
    run = billrun_create(bill_as_of_date=dt.date(2026, 7, 1), transaction_date=dt.date(2026, 7, 1))
    response = billing_admin_client.get(f"/api/v1/billing-runs/{run.number}/")

    assert response.status_code == 200
    assert (response.json()["target_stage"], response.json()["current_stage"]) == ("", "")
    conforms(openapi, "GET", "/api/v1/billing-runs/{number}/", response)


def test_a_usage_price_has_no_frequency_and_matches_the_schema(openapi, session_client):
    # Found: GET /api/v1/catalog/price-plans/plan-5/ sent "frequency": null where the schema said string.
    plan = b.plan(name="Fuzz usage")
    b.usage_component(plan, unit_price="0.01")
    response = session_client(roles.BILLING_ADMIN).get(f"/api/v1/catalog/price-plans/{plan.code}/")

    assert response.status_code == 200
    assert response.json()["components"][0]["prices"][0]["frequency"] is None
    conforms(openapi, "GET", "/api/v1/catalog/price-plans/{code}/", response)


def test_a_failed_rendering_is_documented_as_503_with_retry_after(openapi):
    body, _ = openapi
    responses = body["paths"]["/api/v1/statements/{statement_id}/invoice/"]["post"]["responses"]

    assert "503" in responses and "500" not in responses


def test_a_nul_character_anywhere_in_a_json_body_is_a_400_and_nothing_is_stored(openapi, biller_api):
    # Found: POST /api/v1/usage-records/bulk/ with an Idempotency-Key and a record whose external_id held
    # "\u0000" answered 500: the record was rejected, but the answer echoing its id could not be stored for
    # the key's replay (jsonb refuses NUL). NUL can be stored nowhere, so the API refuses it at the parser.
    from billing_mgmt.models import IdempotencyRecord
    from billruns.models import UsageRecord

    client, _ = biller_api
    records = [
        {"external_id": "ok-1", "usage_type": "voice", "quantity": "1", "unit": "min",
         "event_time": "2026-11-01T10:00:00Z", "service_identifier": "+15550001"},
        {"external_id": "bad\u0000id", "usage_type": "voice", "quantity": "1", "unit": "min",
         "event_time": "2026-11-01T10:00:00Z", "service_identifier": "+15550001"},
    ]  # fmt: skip
    response = client.post(
        "/api/v1/usage-records/bulk/", {"records": records}, format="json", HTTP_IDEMPOTENCY_KEY="nul-1"
    )
    assert response.status_code == 400, response.content
    assert "NUL" in response.json()["error"]["message"]
    conforms(openapi, "POST", "/api/v1/usage-records/bulk/", response)
    assert UsageRecord.objects.count() == 0
    assert not IdempotencyRecord.objects.filter(key="nul-1").exists()
    # The same escape as text (a backslash, then "u0000") is no NUL, and is not refused as one.
    records[1]["external_id"] = "bad\\u0000id"
    response = client.post("/api/v1/usage-records/bulk/", {"records": records}, format="json")
    assert response.status_code != 400 or "NUL" not in response.json()["error"]["message"]
