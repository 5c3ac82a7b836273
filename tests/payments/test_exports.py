"""Export of payments and adjustments to external billers: the outbox, signed pushes with retries and a dead
letter, polling billers, and the billers' confirmations and rejections."""

from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import threading
import time
from decimal import Decimal

import pytest

from accounts.models import Biller
from billing_mgmt.errors import ApplicationError, Conflict, NotFound
from payments.models import Adjustment, AdjustmentReason, ExportItem, Payment
from payments.services import (
    SIGNATURE_HEADER,
    adjustment_request,
    export_acknowledge,
    export_answer,
    export_deliver,
    export_retry,
    exports_due,
    payment_post,
    payment_reverse,
)
from statements.models import FinancialTransaction
from tests.factories import AccountFactory, BillerFactory, BillerReferenceFactory

pytestmark = pytest.mark.django_db
D = Decimal
SECRET = "s3cret-shared-with-the-biller"


class FakeBiller:
    """A biller's export endpoint on loopback: answers with the scripted statuses in turn (then 200), and can
    be slow (it applies the export, then answers late: the sender times out)."""

    def __init__(self, statuses=(), delay=0.0):
        self.statuses = list(statuses)
        self.delay = delay
        self.received: list[tuple[dict, dict]] = []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                owner.received.append((json.loads(body), {**self.headers, "raw": body}))
                if owner.delay:
                    time.sleep(owner.delay)
                status = owner.statuses.pop(0) if owner.statuses else 200
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/exports"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()


@pytest.fixture
def fake_biller():
    made = []

    def make(**kwargs):
        server = FakeBiller(**kwargs)
        made.append(server)
        return server

    yield make
    for server in made:
        server.stop()


def customer_of(biller):
    account = AccountFactory()
    BillerReferenceFactory(account=account, biller=biller, external_ref="CUST-77")
    return account


def pay(account, user, key="k1", amount="20.00"):
    payment, _ = payment_post(account=account, amount=amount, currency="USD", idempotency_key=key,
                              reference="Cheque 5", actor=user)  # fmt: skip
    return payment


def test_a_payment_for_a_push_billers_account_is_signed_and_delivered_once(
    fake_biller, csr_user, django_capture_on_commit_callbacks
):
    server = fake_biller()
    biller = BillerFactory(code="telco", export_mode="push", export_url=server.url, export_secret=SECRET)
    account = customer_of(biller)
    with django_capture_on_commit_callbacks(execute=False) as queued:
        payment = pay(account, csr_user)
    assert len(queued) == 1  # the delivery task goes after the commit
    item = ExportItem.objects.get(payment=payment)
    assert item.kind == "payment" and item.status == "pending" and item.biller == biller
    assert export_deliver(item_pk=item.pk) == "delivered"
    assert export_deliver(item_pk=item.pk) == "skipped"  # a redelivered task sends nothing
    [(payload, headers)] = server.received
    assert payload["export_id"] == str(item.export_id) and payload["type"] == "payment"
    assert payload["account"] == {"number": account.number, "reference": "CUST-77"}
    assert (payload["amount"], payload["currency"], payload["reference"]) == ("20.00", "USD", "Cheque 5")
    expected = "sha256=" + hmac.new(SECRET.encode(), headers["raw"], hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers[SIGNATURE_HEADER], expected)
    assert headers["X-Billing-Export-Id"] == str(item.export_id)


def test_failed_pushes_back_off_then_dead_letter_and_an_admin_retry_delivers(
    fake_biller, csr_user, billing_admin_user, settings
):
    settings.PAYMENTS_EXPORT_MAX_ATTEMPTS = 3
    server = fake_biller(statuses=[500, 503, 502])
    biller = BillerFactory(code="telco", export_mode="push", export_url=server.url, export_secret=SECRET)
    item = ExportItem.objects.get(payment=pay(customer_of(biller), csr_user))
    assert export_deliver(item_pk=item.pk) == "retrying"
    item.refresh_from_db()
    assert (item.attempts, item.last_error) == (1, "HTTP 500") and item.pk not in exports_due()
    assert export_deliver(item_pk=item.pk) == "not due"  # waits for its backoff
    for expected in ("retrying", "dead"):
        ExportItem.objects.filter(pk=item.pk).update(next_attempt_at=item.created_at)
        assert export_deliver(item_pk=item.pk) == expected
    item.refresh_from_db()
    assert item.status == "dead" and item.attempts == 3
    pending = ExportItem.objects.create(
        export_id="00000000-0000-0000-0000-000000000001",
        biller=biller,
        account=item.account,
        kind="payment_reversal",
        payment=item.payment,
        payload={},
    )
    with pytest.raises(Conflict):  # only a dead export is retried
        export_retry(item_pk=pending.pk, actor=billing_admin_user)
    export_retry(item_pk=item.pk, actor=billing_admin_user)
    assert export_deliver(item_pk=item.pk) == "delivered"
    assert len({p["export_id"] for p, _ in server.received}) == 1  # every attempt carried the same id


def test_a_biller_that_applies_then_times_out_gets_the_same_export_id_again(fake_biller, csr_user, settings):
    settings.PAYMENTS_EXPORT_TIMEOUT_SECONDS = 1
    server = fake_biller(delay=1.5)
    biller = BillerFactory(code="slow", export_mode="push", export_url=server.url, export_secret=SECRET)
    item = ExportItem.objects.get(payment=pay(customer_of(biller), csr_user))
    assert export_deliver(item_pk=item.pk) == "retrying"  # the biller applied it but answered too late
    item.refresh_from_db()
    assert "timed out" in item.last_error.lower() or "timeout" in item.last_error.lower()
    server.delay = 0
    ExportItem.objects.filter(pk=item.pk).update(next_attempt_at=item.created_at)
    assert export_deliver(item_pk=item.pk) == "delivered"
    ids = [p["export_id"] for p, _ in server.received]
    assert len(ids) == 2 and ids[0] == ids[1] == str(item.export_id)  # the biller ignores the second


def test_a_polling_biller_acknowledges_confirms_or_rejects(csr_user, supervisor_user):
    biller = BillerFactory(code="poller")  # export mode poll by default
    account = customer_of(biller)
    payment = pay(account, csr_user)
    item = ExportItem.objects.get(payment=payment)
    assert item.next_attempt_at is None and item.pk not in exports_due()
    assert export_acknowledge(biller=biller, export_id=item.export_id).status == "delivered"
    other = BillerFactory(code="other")
    with pytest.raises(NotFound):
        export_answer(biller=other, export_id=item.export_id, accepted=True)  # not its export
    with pytest.raises(ApplicationError):
        export_answer(biller=biller, export_id=item.export_id, accepted=False, reason=" ")
    rejected = export_answer(biller=biller, export_id=item.export_id, accepted=False, reason="Account closed")
    assert rejected.status == "rejected"
    payment.refresh_from_db()
    assert payment.status == Payment.Status.REVERSED and "Account closed" in payment.reversal_reason
    # The biller refused it: no reversal is exported back to it.
    assert not ExportItem.objects.filter(kind="payment_reversal").exists()
    assert (
        export_answer(biller=biller, export_id=item.export_id, accepted=False, reason="again").status
        == "rejected"
    )
    with pytest.raises(Conflict):
        export_answer(biller=biller, export_id=item.export_id, accepted=True)


def test_a_reversed_payment_exports_its_reversal_and_a_rejected_adjustment_is_reversed(csr_user):
    biller = BillerFactory(code="poller")
    account = customer_of(biller)
    payment = pay(account, csr_user)
    export_answer(biller=biller, export_id=payment.exports.get().export_id, accepted=True)
    payment_reverse(payment=payment, reason="Bounced", actor=csr_user)
    reversal = ExportItem.objects.get(kind="payment_reversal")
    assert reversal.payload["reverses"] == str(payment.exports.get(kind="payment").export_id)
    assert reversal.payload["reason"] == "Bounced"

    from payments.models import AdjustmentLimit

    AdjustmentLimit.objects.create(user=csr_user, currency="USD", max_amount=D("50.00"))
    reason = AdjustmentReason.objects.create(code="goodwill", name="Goodwill", direction="credit")
    adjustment, _ = adjustment_request(account=account, direction="credit", amount="10.00", currency="USD",
                                       reason=reason, idempotency_key="a1", actor=csr_user)  # fmt: skip
    item = ExportItem.objects.get(adjustment=adjustment)
    assert (item.payload["amount"], item.payload["reason_code"]) == ("-10.00", "goodwill")
    export_answer(biller=biller, export_id=item.export_id, accepted=False, reason="Not allowed")
    adjustment.refresh_from_db()
    assert adjustment.status == Adjustment.Status.REVERSED
    assert adjustment.reversal.amount == D("10.00") and adjustment.reversal.corrects == adjustment.transaction


def test_nothing_is_exported_for_accounts_this_product_bills_alone(csr_user):
    account = AccountFactory()  # no external biller reference
    pay(account, csr_user)
    assert not ExportItem.objects.exists()
    assert FinancialTransaction.objects.filter(kind="payment").count() == 1


def test_a_push_biller_needs_an_endpoint_and_a_secret():
    from django.db import IntegrityError, transaction

    with pytest.raises(IntegrityError), transaction.atomic():
        BillerFactory(code="bad", export_mode=Biller.ExportMode.PUSH, export_url="", export_secret="")
