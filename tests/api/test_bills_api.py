"""Bills API: bill now and preview, with permissions, bad input and idempotency."""

from __future__ import annotations

import datetime as dt

import pytest
from rest_framework.test import APIClient

from billruns.models import BillSegment
from statements.models import FinancialTransaction, Statement
from tests.billruns import builders as b
from tests.factories import AccountFactory

pytestmark = pytest.mark.django_db
URL = "/api/v1/bills/"
PREVIEW_URL = "/api/v1/bills/preview/"


@pytest.fixture
def account():
    acc = AccountFactory()
    plan = b.plan()
    b.recurring(plan, "30.00")
    b.subscription(acc, plan, dt.date(2026, 6, 10))
    return acc


def logged_in(user) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


def body(account, **extra):
    return {"account": account.number, "bill_date": "2026-06-10", **extra}


def test_supervisor_bills_an_account_now(account, supervisor_user):
    response = logged_in(supervisor_user).post(URL, body(account), format="json")
    assert response.status_code == 201, response.content
    data = response.json()
    assert data["preview"] is False and data["number"].startswith("ST-")
    assert (data["new_charges"], data["taxes"], data["total_due"]) == ("21.0000", "0.0000", "21.0000")
    assert data["due_date"] == "2026-06-24"
    (segment,) = data["segments"]
    assert segment["lines"][0]["amount"] == "21.0000"
    assert segment["lines"][0]["proration_factor"] == "0.7000000000"
    assert Statement.objects.get(pk=data["statement_id"]).total_due == b.D("21.00")


def test_csr_may_preview_but_not_bill(account, csr_user):
    client = logged_in(csr_user)
    preview = client.post(PREVIEW_URL, body(account), format="json")
    assert preview.status_code == 200
    assert preview.json()["preview"] is True and preview.json()["number"] is None
    assert preview.json()["total_due"] == "21.0000"
    assert client.post(URL, body(account), format="json").status_code == 403
    assert not Statement.objects.exists() and not BillSegment.objects.exists()


def test_billers_and_anonymous_callers_may_not_bill(account, biller_client, biller_factory):
    assert APIClient().post(URL, body(account), format="json").status_code == 401
    response = biller_client(biller_factory()).post(URL, body(account), format="json")
    assert response.status_code == 403
    assert not Statement.objects.exists()


def test_bad_input_is_a_400_with_field_errors_and_nothing_stored(account, supervisor_user):
    client = logged_in(supervisor_user)
    response = client.post(URL, {"account": account.number, "bill_date": "10/06/2026"}, format="json")
    assert response.status_code == 400
    assert "bill_date" in response.json()["error"]["fields"]
    response = client.post(URL, body(account, bill_as_of="2026-07-01"), format="json")
    assert response.status_code == 400 and "bill_as_of" in response.json()["error"]["fields"]
    assert client.post(URL, {"account": "NOPE"}, format="json").status_code == 404
    assert not Statement.objects.exists() and not FinancialTransaction.objects.exists()


def test_second_bill_has_nothing_to_bill_and_a_repeated_key_replays_the_first(account, supervisor_user):
    client = logged_in(supervisor_user)
    first = client.post(URL, body(account), format="json", HTTP_IDEMPOTENCY_KEY="bill-1")
    replay = client.post(URL, body(account), format="json", HTTP_IDEMPOTENCY_KEY="bill-1")
    assert first.status_code == replay.status_code == 201
    assert replay.json() == first.json() and replay["Idempotent-Replayed"] == "true"
    again = client.post(URL, body(account), format="json")
    assert again.status_code == 400 and again.json()["error"]["code"] == "nothing_to_bill"
    assert Statement.objects.count() == 1


# --- reversing a bill (a corrective bill; its invoice is a credit note) -----------------------------------


def _billed(account, supervisor_user, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        response = logged_in(supervisor_user).post(URL, body(account), format="json")
    assert response.status_code == 201
    return Statement.objects.get(pk=response.json()["statement_id"])


def test_supervisor_reverses_a_bill_and_its_invoice_is_queued(
    account, supervisor_user, django_capture_on_commit_callbacks
):
    bill = _billed(account, supervisor_user, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=False) as queued:
        response = logged_in(supervisor_user).post(
            f"/api/v1/bills/{bill.pk}/reverse/", {"reason": "Wrong plan"}, format="json"
        )
    assert response.status_code == 201, response.content
    data = response.json()
    assert data["corrects"] == bill.number
    assert (data["new_charges"], data["total_due"]) == ("-21.0000", "0.0000")
    assert len(queued) == 1  # the credit note is rendered by a worker after the commit
    reversal = FinancialTransaction.objects.get(kind="reversal")
    assert reversal.amount == b.D("-21.00") and reversal.corrects.statement_id == bill.pk


def test_reversal_refusals(
    account, supervisor_user, csr_user, biller_client, biller_factory, django_capture_on_commit_callbacks
):
    bill = _billed(account, supervisor_user, django_capture_on_commit_callbacks)
    url = f"/api/v1/bills/{bill.pk}/reverse/"
    client = logged_in(supervisor_user)
    missing = client.post(url, {}, format="json")
    assert missing.status_code == 400 and "reason" in missing.json()["error"]["fields"]
    assert logged_in(csr_user).post(url, {"reason": "x"}, format="json").status_code == 403
    assert biller_client(biller_factory()).post(url, {"reason": "x"}, format="json").status_code == 403
    assert client.post("/api/v1/bills/999999/reverse/", {"reason": "x"}, format="json").status_code == 404
    with django_capture_on_commit_callbacks(execute=False):
        assert client.post(url, {"reason": "x"}, format="json").status_code == 201
    again = client.post(url, {"reason": "x"}, format="json")
    assert again.status_code == 409 and again.json()["error"]["code"] == "already_reversed"
    assert Statement.objects.filter(corrects=bill).count() == 1


def test_bill_now_queues_its_invoice(
    account, supervisor_user, django_capture_on_commit_callbacks, monkeypatch
):
    from invoicing import tasks

    queued = []
    monkeypatch.setattr(tasks.render_invoices, "delay", lambda **kw: queued.append(kw))
    with django_capture_on_commit_callbacks(execute=True):
        response = logged_in(supervisor_user).post(URL, body(account), format="json")
    assert queued == [{"statement_ids": [response.json()["statement_id"]]}]
