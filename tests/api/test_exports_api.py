"""Exports API: a biller reads, acknowledges, confirms and rejects its own exports; nobody else may."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from payments.models import ExportItem, Payment
from payments.services import payment_post
from tests.factories import AccountFactory, BillerFactory, BillerReferenceFactory

pytestmark = pytest.mark.django_db
URL = "/api/v1/exports/"


@pytest.fixture
def setup(csr_user, biller_client):
    biller, other = BillerFactory(code="poller"), BillerFactory(code="other")
    account = AccountFactory()
    BillerReferenceFactory(account=account, biller=biller, external_ref="C-1")
    payment, _ = payment_post(
        account=account, amount="12.50", currency="USD", idempotency_key="k", actor=csr_user
    )
    return {
        "payment": payment,
        "item": ExportItem.objects.get(payment=payment),
        "client": biller_client(biller),
        "other": biller_client(other),
    }


def test_a_biller_lists_and_acknowledges_its_pending_exports(setup):
    client, item = setup["client"], setup["item"]
    response = client.get(URL, {"status": "pending"})
    assert response.status_code == 200, response.content
    [row] = response.json()["results"]
    assert row["export_id"] == str(item.export_id) and row["type"] == "payment"
    assert row["payload"]["amount"] == "12.50" and row["payload"]["account"]["reference"] == "C-1"
    ack = client.post(f"{URL}{item.export_id}/acknowledge/")
    assert ack.status_code == 200 and ack.json()["status"] == "delivered"
    assert client.get(URL, {"status": "pending"}).json()["results"] == []
    assert client.get(URL, {"status": "bogus"}).status_code == 400


def test_confirm_and_reject(setup):
    client, item = setup["client"], setup["item"]
    missing = client.post(f"{URL}{item.export_id}/reject/", {}, format="json")
    assert missing.status_code == 400 and "reason" in missing.json()["error"]["fields"]
    rejected = client.post(f"{URL}{item.export_id}/reject/", {"reason": "Unknown customer"}, format="json")
    assert rejected.status_code == 200 and rejected.json()["status"] == "rejected"
    setup["payment"].refresh_from_db()
    assert setup["payment"].status == Payment.Status.REVERSED
    conflict = client.post(f"{URL}{item.export_id}/confirm/")
    assert conflict.status_code == 409 and conflict.json()["error"]["code"] == "already_answered"


def test_only_the_billers_own_exports(setup, csr_user):
    item, other = setup["item"], setup["other"]
    assert other.get(URL).json()["results"] == []
    assert other.post(f"{URL}{item.export_id}/confirm/").status_code == 404
    assert other.post(f"{URL}not-a-uuid/confirm/").status_code == 404
    staff = APIClient()
    staff.force_login(csr_user)
    assert staff.get(URL).status_code == 403
    assert APIClient().get(URL).status_code in (401, 403)
    item.refresh_from_db()
    assert item.status == "pending"
