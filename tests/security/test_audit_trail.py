"""F9 (2), the audit trail: every create and change of a bill, payment, adjustment, payment method, dispute,
case, billing run, run definition and price plan writes one audit record per object it changes, with the
actor (a user, an API client or a named system actor), the time, what was before and after, and the request
id when it happened in a request; the database refuses to change or delete audit records; a CSR reads an
account's history on its page.

The changes are driven through the real entry points (the API, the CSR pages, the portal, Django admin with
its bulk actions, the billing run's workers). Each test watches every row of the audited models
(``WATCHED``) before and after the call: every row created, changed or deleted must have exactly one new
audit record about it, and no audit record may name a watched row that did not change. A billing run
moving through its stages is the one object allowed several records in one call (one per move, chained:
each record's "before" is the previous one's "after").
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group, Permission
from django.db import IntegrityError, connection, transaction
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from billing_mgmt import roles
from billing_mgmt.audit import audit_record
from billing_mgmt.models import AuditRecord
from billruns.models import BillingRun, PricePlan, Product, RunDefinition, Stage
from billruns.services import billrun_create
from disputes.models import Case, Dispute
from payments.models import Adjustment, AdjustmentLimit, AdjustmentReason, Payment, PaymentMethod
from statements.models import Statement
from tests.billruns import builders as b
from tests.billruns.runs_helpers import JULY_1, customer, definition, monthly_plan
from tests.billruns.test_admin_catalog import form_errors
from tests.billruns.test_admin_runs import definition_data, post_form
from tests.disputes.builders import world
from tests.factories import (
    AccountFactory,
    BillerFactory,
    BillerReferenceFactory,
    UserFactory,
    api_key_for,
    statement_record,
)

pytestmark = pytest.mark.django_db
D = Decimal
HTMX = {"HTTP_HX_REQUEST": "true"}
WATCHED = (Statement, Payment, Adjustment, PaymentMethod, Dispute, Case, BillingRun, RunDefinition, PricePlan)
LABELS = {model._meta.label_lower for model in WATCHED}


# --- the trail: what one call changed, and what it recorded ---


def _rows() -> dict[tuple[str, str], dict]:
    return {
        (model._meta.label_lower, str(row["id"])): row for model in WATCHED for row in model.objects.values()
    }


@dataclass
class Trail:
    records: list[AuditRecord] = field(default_factory=list)
    changed: set[tuple[str, str]] = field(default_factory=set)

    def about(self, obj) -> list[AuditRecord]:
        key = (obj._meta.label_lower, str(obj.pk))
        return [r for r in self.records if (r.object_type, r.object_id) == key]

    def one(self, obj, action: str) -> AuditRecord:
        found = self.about(obj)
        assert [r.action for r in found] == [action], (
            f"{obj._meta.label_lower}#{obj.pk}: {[r.action for r in found]}"
        )
        return found[0]

    def actions(self) -> Counter:
        return Counter(r.action for r in self.records)


@contextmanager
def trail(*, many: tuple[type, ...] = ()):
    """Run the block; then every watched row it created, changed or deleted has exactly one new audit
    record (rows of the ``many`` models at least one), and no new record names a watched row it left alone."""
    last = AuditRecord.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    before = _rows()
    found = Trail()
    yield found
    after = _rows()
    found.records = list(AuditRecord.objects.filter(pk__gt=last).order_by("pk"))
    found.changed = {key for key in before.keys() | after.keys() if before.get(key) != after.get(key)}
    counted = Counter((r.object_type, r.object_id) for r in found.records if r.object_type in LABELS)
    lenient = {model._meta.label_lower for model in many}
    unaudited = sorted(key for key in found.changed if key not in counted)
    assert not unaudited, f"changed without an audit record: {unaudited} ({found.actions()})"
    twice = sorted(k for k, n in counted.items() if n > 1 and k[0] not in lenient)
    assert not twice, f"more than one audit record for one change: {twice} ({found.actions()})"
    unchanged = sorted(key for key in counted if key not in found.changed)
    assert not unchanged, f"audit records about rows that did not change: {unchanged}"
    now = timezone.now()
    for record in found.records:
        assert now - dt.timedelta(minutes=5) < record.created_at <= now


def by(record: AuditRecord, actor, request_id: str | None = None) -> AuditRecord:
    """The record names its actor and carries the request's id ("-": not made in a request)."""
    if isinstance(actor, str):
        assert (record.actor_type, record.actor_label, record.actor_user_id) == ("system", actor, None)
    elif getattr(actor, "is_api_client", False) or isinstance(actor, APIActor):
        assert record.actor_type == "api_client" and record.actor_user_id is None
        assert record.actor_label.startswith(f"api:{actor.biller.code}:"), record.actor_label
    else:
        assert (record.actor_type, record.actor_user_id, record.actor_label) == (
            "user",
            actor.pk,
            actor.get_username(),
        )
    assert record.request_id == (request_id or "-"), (record.action, record.request_id, request_id)
    return record


@dataclass
class APIActor:
    """A biller's API client as the tests know it (the key's biller)."""

    biller: object


def rid() -> str:
    return f"audit-{uuid.uuid4().hex[:12]}"


def sent(response, request_id: str, status: int = 200) -> str:
    """The middleware kept the caller's X-Request-ID and answered with it."""
    assert response.status_code == status, response.content[:800]
    assert response["X-Request-ID"] == request_id
    return request_id


def logged_in(user, cls=APIClient):
    client = cls()
    client.force_login(user)
    return client


def _token(html: str) -> str:
    return re.search(r'<input type="hidden" name="token" value="([^"]+)">', html).group(1)


@pytest.fixture(autouse=True)
def _mail(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"


# --- bills ---


def test_a_biller_pushed_statement_is_audited_on_create_replace_and_status_change():
    biller = BillerFactory(code="northwind")
    account = AccountFactory()
    BillerReferenceFactory(account=account, biller=biller, external_ref="NW-1")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {api_key_for(biller)}")
    actor = APIActor(biller)

    def put(request_id, **overrides):
        record = statement_record("NW-1", "S-1", **overrides)
        del record["type"], record["external_id"]
        return client.put("/api/v1/statements/S-1/", record, format="json", HTTP_X_REQUEST_ID=request_id)

    with trail() as created:
        request_id = rid()
        sent(put(request_id), request_id, 201)
    statement = Statement.objects.get(biller=biller, external_id="S-1")
    record = by(created.one(statement, "statement.create"), actor, request_id)
    assert record.account_id == account.pk and record.before is None
    assert record.after["total_due"] == str(statement.total_due) and record.after["status"] == "open"

    with trail() as replaced:
        request_id = rid()
        sent(put(request_id, previous_balance="10.00"), request_id)
    record = by(replaced.one(statement, "statement.replace"), actor, request_id)
    assert (record.before["previous_balance"], record.after["previous_balance"]) == ("0.0000", "10.0000")

    with trail() as status:
        request_id = rid()
        sent(put(request_id, previous_balance="10.00", status="paid"), request_id)
    record = by(status.one(statement, "statement.status"), actor, request_id)
    assert (record.before, record.after) == ({"status": "open"}, {"status": "paid"})


@pytest.fixture
def billable(supervisor_user):
    account = AccountFactory()
    plan = b.plan()
    b.recurring(plan, "30.00")
    b.subscription(account, plan, dt.date(2026, 6, 10))
    return account


def test_an_engine_bill_and_its_reversal_through_the_api(billable, supervisor_user):
    client = logged_in(supervisor_user)
    with trail() as made:
        request_id = rid()
        response = client.post(
            "/api/v1/bills/",
            {"account": billable.number, "bill_date": "2026-06-10"},
            format="json",
            HTTP_X_REQUEST_ID=request_id,
        )
        sent(response, request_id, 201)
    bill = Statement.objects.get(pk=response.json()["statement_id"])
    record = by(made.one(bill, "bill.create"), supervisor_user, request_id)
    assert record.account_id == billable.pk and record.after["total_due"] == "21.0000"
    assert made.actions()["ledger.post"] == 1  # the bill's ledger row, audited with it

    with trail() as reversed_:
        request_id = rid()
        response = client.post(
            f"/api/v1/bills/{bill.pk}/reverse/",
            {"reason": "Billed twice"},
            format="json",
            HTTP_X_REQUEST_ID=request_id,
        )
        sent(response, request_id, 201)
    reversal = Statement.objects.get(corrects=bill)
    record = by(reversed_.one(reversal, "bill.reverse"), supervisor_user, request_id)
    assert record.after["corrects_id"] == bill.pk and record.after["reason"] == "Billed twice"
    assert record.account_id == billable.pk


def test_a_billing_run_posts_its_bills_in_sets_with_one_record_per_bill(
    admin_client, billing_admin_user, eager, django_capture_on_commit_callbacks
):
    definition()
    plan = monthly_plan()
    accounts = [customer(plan)[0] for _ in range(3)]
    run = billrun_create(bill_as_of_date=JULY_1, transaction_date=JULY_1, actor=billing_admin_user)
    with trail(many=(BillingRun,)) as executed:
        request_id = rid()
        with django_capture_on_commit_callbacks(execute=True):
            response = admin_client.post(
                reverse("admin:billruns_billingrun_changelist"),
                {"action": f"execute_up_to_{Stage.POSTING}", "_selected_action": [str(run.pk)]},
                HTTP_X_REQUEST_ID=request_id,
            )
        sent(response, request_id, 302)
    run.refresh_from_db()
    assert (run.state, run.execution, run.bills_generated) == (Stage.POSTING, "idle", 3)
    moves = executed.about(run)
    assert [r.action for r in moves][0] == "billrun.execute" and len(moves) >= 3
    by(moves[0], billing_admin_user, request_id)
    assert moves[0].after["execution"] == "running" and moves[0].after["target_stage"] == Stage.POSTING
    for previous, record in zip(moves[1:], moves[2:], strict=False):
        assert record.before == previous.after  # the coordinator's moves, chained
    for record in moves[1:]:
        by(record, "billing run coordinator")  # the workers' own, after the request: no request id
        assert record.action == "billrun.advance"
    assert moves[-1].after["state"] == Stage.POSTING and moves[-1].after["execution"] == "idle"
    bills = Statement.objects.filter(run_account__run=run)
    assert sorted(bills.values_list("account_id", flat=True)) == sorted(a.pk for a in accounts)
    for bill in bills:
        record = by(executed.one(bill, "bill.create"), f"billing run {run.number}")
        assert record.account_id == bill.account_id and record.after["number"] == bill.number


def test_a_billing_run_through_the_api_and_the_admin_actions(billing_admin_user, admin_client):
    definition()
    client = logged_in(billing_admin_user)
    url = "/api/v1/billing-runs/"
    with trail() as created:
        request_id = rid()
        response = client.post(
            url,
            {"bill_as_of_date": "2026-07-01", "transaction_date": "2026-07-02"},
            format="json",
            HTTP_X_REQUEST_ID=request_id,
        )
        sent(response, request_id, 201)
    run = BillingRun.objects.get(number=response.json()["number"])
    record = by(created.one(run, "billrun.create"), billing_admin_user, request_id)
    assert record.before is None and record.after["transaction_date"] == "2026-07-02"

    steps = [
        (
            "patch",
            f"{url}{run.number}/",
            {"transaction_date": "2026-07-03"},
            "billrun.update",
            ("transaction_date", "2026-07-02", "2026-07-03"),
        ),
        (
            "post",
            f"{url}{run.number}/execute/",
            {"up_to": "rating", "at": (timezone.now() + dt.timedelta(days=1)).isoformat()},
            "billrun.execute",
            ("execution", "idle", "scheduled"),
        ),
        (
            "post",
            f"{url}{run.number}/unschedule/",
            {},
            "billrun.unschedule",
            ("execution", "scheduled", "idle"),
        ),
    ]
    for method, path, data, action, (name, was, now) in steps:
        with trail() as changed:
            request_id = rid()
            response = getattr(client, method)(path, data, format="json", HTTP_X_REQUEST_ID=request_id)
            sent(response, request_id, 202 if action == "billrun.execute" else 200)
        record = by(changed.one(run, action), billing_admin_user, request_id)
        assert (record.before[name], record.after[name]) == (was, now), action

    with trail() as deleted:
        request_id = rid()
        sent(client.delete(f"{url}{run.number}/", HTTP_X_REQUEST_ID=request_id), request_id, 204)
    record = by(deleted.one(run, "billrun.delete"), billing_admin_user, request_id)
    assert record.after is None and record.before["number"] == run.number

    # The admin's bulk delete: one record per run it deletes.
    drafts = [billrun_create(bill_as_of_date=JULY_1, transaction_date=JULY_1) for _ in range(2)]
    with trail() as bulk:
        request_id = rid()
        response = admin_client.post(
            reverse("admin:billruns_billingrun_changelist"),
            {"action": "delete_selected", "_selected_action": [str(r.pk) for r in drafts], "post": "yes"},
            HTTP_X_REQUEST_ID=request_id,
        )
        sent(response, request_id, 302)
    assert not BillingRun.objects.filter(pk__in=[r.pk for r in drafts]).exists()
    for draft in drafts:
        by(bulk.one(draft, "billrun.delete"), billing_admin_user, request_id)


# --- run definitions and price plans (admin and API) ---


def test_a_run_definition_created_and_changed_in_admin(admin_client, billing_admin_user):
    with trail() as created:
        request_id = rid()
        response = admin_client.post(
            reverse("admin:billruns_rundefinition_add"), definition_data(), HTTP_X_REQUEST_ID=request_id
        )
        sent(response, request_id, 302)
    saved = RunDefinition.objects.get()
    record = by(created.one(saved, "run_definition.create"), billing_admin_user, request_id)
    assert record.before is None and record.after["name"] == "Monthly post-paid"

    scheme = b.scheme("standard")
    url = reverse("admin:billruns_rundefinition_change", args=[saved.pk])
    with trail() as changed:
        request_id = rid()
        changes = {
            "description": "Bills on the 1st",
            "chunk_size": "250",
            "billing_term_schemes": [str(scheme.pk)],
        }
        response = post_form(_with_request_id(admin_client, request_id), url, changes)
        assert response.status_code == 302, form_errors(response)
        sent(response, request_id, 302)
    record = by(changed.one(saved, "run_definition.update"), billing_admin_user, request_id)
    assert (record.before["description"], record.after["description"]) == ("", "Bills on the 1st")
    assert (record.before["chunk_size"], record.after["chunk_size"]) == (500, 250)
    assert (record.before["billing_term_schemes"], record.after["billing_term_schemes"]) == ([], [scheme.pk])


class _with_request_id:
    """A test client whose requests all carry one X-Request-ID (for helpers that GET then POST)."""

    def __init__(self, client, request_id: str):
        self.client, self.request_id = client, request_id

    def get(self, *args, **kwargs):
        return self.client.get(*args, HTTP_X_REQUEST_ID=self.request_id, **kwargs)

    def post(self, *args, **kwargs):
        return self.client.post(*args, HTTP_X_REQUEST_ID=self.request_id, **kwargs)


def test_a_price_plan_created_through_the_api_and_changed_in_admin(billing_admin_user, admin_client):
    Product.objects.create(code="mobile", name="Mobile line", service_type="mobile")
    b.scheme("standard")
    b.frequency("monthly")
    body = {
        "code": "mobile-30",
        "name": "Mobile 30",
        "product": "mobile",
        "currency": "USD",
        "billing_term_scheme": "standard",
        "components": [
            {
                "code": "fee",
                "name": "Monthly fee",
                "kind": "recurring",
                "timing": "advance",
                "prices": [{"frequency": "monthly", "valid_from": "2026-01-01", "amount": "30.00"}],
            }
        ],
    }
    with trail() as created:
        request_id = rid()
        response = logged_in(billing_admin_user).post(
            "/api/v1/catalog/price-plans/", body, format="json", HTTP_X_REQUEST_ID=request_id
        )
        sent(response, request_id, 201)
    plan = PricePlan.objects.get(code="mobile-30")
    record = by(created.one(plan, "price_plan.create"), billing_admin_user, request_id)
    assert record.after["name"] == "Mobile 30" and record.after["components"][0]["code"] == "fee"

    url = reverse("admin:billruns_priceplan_change", args=[plan.pk])
    with trail() as changed:
        request_id = rid()
        response = post_form(_with_request_id(admin_client, request_id), url, {"name": "Mobile 30 Plus"})
        assert response.status_code == 302, form_errors(response)
        sent(response, request_id, 302)
    record = by(changed.one(plan, "priceplan.update"), billing_admin_user, request_id)
    assert (record.before["name"], record.after["name"]) == ("Mobile 30", "Mobile 30 Plus")

    # The admin's bulk delete of plans nothing uses: one record each.
    spare = [b.plan(name=f"Spare {i}") for i in range(2)]
    with trail() as bulk:
        request_id = rid()
        response = admin_client.post(
            reverse("admin:billruns_priceplan_changelist"),
            {"action": "delete_selected", "_selected_action": [str(p.pk) for p in spare], "post": "yes"},
            HTTP_X_REQUEST_ID=request_id,
        )
        sent(response, request_id, 302)
    for gone in spare:
        record = by(bulk.one(gone, "priceplan.delete"), billing_admin_user, request_id)
        assert record.before["name"] == gone.name


# --- payments, adjustments, payment methods (CSR pages and API) ---


@pytest.fixture
def w():
    return world()


def _section(client, account, key, form=None) -> str:
    url = reverse("account-section", args=[account.number, key]) + (f"?form={form}" if form else "")
    response = client.get(url, **HTMX)
    assert response.status_code == 200
    return response.content.decode()


def test_payment_methods_added_made_default_and_removed_on_the_csr_pages(client, w):
    csr = w.csr
    client.force_login(csr)
    add = reverse("payment-method-add", args=[w.account.number])

    with trail() as first:
        request_id = rid()
        response = client.post(
            add, {"kind": "other", "description": "Cash desk"}, HTTP_X_REQUEST_ID=request_id, **HTMX
        )
        sent(response, request_id, 204)
    cash = PaymentMethod.objects.get(description="Cash desk")
    record = by(first.one(cash, "payment_method.add"), csr, request_id)
    assert record.account_id == w.account.pk and record.after["is_default"] is True

    with trail() as second:  # a new default: the former default's change is recorded too
        request_id = rid()
        response = client.post(
            add,
            {
                "kind": "card",
                "token": "tok_visa_1",
                "brand": "Visa",
                "last4": "4242",
                "expiry_month": "12",
                "expiry_year": str(timezone.localdate().year + 2),
                "holder": "Alice",
                "make_default": "on",
            },
            HTTP_X_REQUEST_ID=request_id,
            **HTMX,
        )
        sent(response, request_id, 204)
    card = PaymentMethod.objects.get(last4="4242")
    record = by(second.one(card, "payment_method.add"), csr, request_id)
    assert record.after["last4"] == "4242" and "token" not in record.after
    record = by(second.one(cash, "payment_method.unset_default"), csr, request_id)
    assert (record.before, record.after, record.account_id) == (
        {"is_default": True},
        {"is_default": False},
        w.account.pk,
    )

    with trail() as default:
        request_id = rid()
        url = reverse("payment-method-default", args=[w.account.number, cash.pk])
        sent(client.post(url, HTTP_X_REQUEST_ID=request_id, **HTMX), request_id, 204)
    record = by(default.one(cash, "payment_method.set_default"), csr, request_id)
    assert (record.before, record.after) == ({"is_default": False}, {"is_default": True})
    by(default.one(card, "payment_method.unset_default"), csr, request_id)

    with trail() as removed:
        request_id = rid()
        url = reverse("payment-method-remove", args=[w.account.number, card.pk])
        sent(client.post(url, {"confirm": "on"}, HTTP_X_REQUEST_ID=request_id, **HTMX), request_id, 204)
    record = by(removed.one(card, "payment_method.remove"), csr, request_id)
    assert record.before["removed_at"] is None and record.after["removed_at"] is not None


def test_payments_posted_and_reversed_on_the_csr_page_and_through_the_api(client, w):
    csr = w.csr
    client.force_login(csr)
    token = _token(_section(client, w.account, "payments", form="payment"))
    with trail() as paid:
        request_id = rid()
        response = client.post(
            reverse("payment-create", args=[w.account.number]),
            {"amount": "75.00", "payment_date": timezone.localdate().isoformat(), "token": token},
            HTTP_X_REQUEST_ID=request_id,
            **HTMX,
        )
        sent(response, request_id, 204)
    payment = Payment.objects.get()
    record = by(paid.one(payment, "payment.post"), csr, request_id)
    assert record.account_id == w.account.pk and D(record.after["amount"]) == payment.amount == D("75")
    # The statement it settled changed status: recorded too, with the cause.
    record = by(paid.one(w.statement, "statement.status"), csr, request_id)
    assert (record.before["status"], record.after["status"]) == ("open", "paid")
    assert paid.actions()["ledger.post"] == 1

    with trail() as reversed_:
        request_id = rid()
        response = client.post(
            reverse("payment-reverse", args=[w.account.number, payment.pk]),
            {"reason": "Cheque bounced"},
            HTTP_X_REQUEST_ID=request_id,
            **HTMX,
        )
        sent(response, request_id, 204)
    record = by(reversed_.one(payment, "payment.reverse"), csr, request_id)
    assert (record.before, record.after["status"]) == ({"status": "posted"}, "reversed")
    record = by(reversed_.one(w.statement, "statement.status"), csr, request_id)
    assert (record.before["status"], record.after["status"]) == ("paid", "overdue")  # due Nov 15, 2026

    api = logged_in(csr)
    with trail() as through_api:
        request_id = rid()
        response = api.post(
            "/api/v1/payments/",
            {"account": w.account.number, "amount": "10.00", "currency": "USD"},
            format="json",
            HTTP_IDEMPOTENCY_KEY="api-pay-1",
            HTTP_X_REQUEST_ID=request_id,
        )
        sent(response, request_id, 201)
    second = Payment.objects.exclude(pk=payment.pk).get()
    by(through_api.one(second, "payment.post"), csr, request_id)
    record = by(through_api.one(w.statement, "statement.status"), csr, request_id)
    assert record.after["status"] == "partially_paid"
    with trail() as reversed_api:
        request_id = rid()
        response = api.post(
            f"/api/v1/payments/{second.pk}/reverse/",
            {"reason": "Duplicate"},
            format="json",
            HTTP_X_REQUEST_ID=request_id,
        )
        sent(response, request_id)
    by(reversed_api.one(second, "payment.reverse"), csr, request_id)


def test_adjustments_requested_approved_and_rejected_on_the_csr_pages(client, w):
    reason = AdjustmentReason.objects.create(code="goodwill", name="Goodwill", direction="both")
    AdjustmentLimit.objects.create(
        role=Group.objects.get(name=roles.CSR), currency="USD", max_amount=D("5.00")
    )
    client.force_login(w.csr)
    made = []
    for amount, expected in (
        ("3.00", "adjustment.post"),
        ("50.00", "adjustment.request"),
        ("60.00", "adjustment.request"),
    ):
        token = _token(_section(client, w.account, "payments", form="adjustment"))
        with trail() as requested:
            request_id = rid()
            response = client.post(
                reverse("adjustment-create", args=[w.account.number]),
                {"direction": "credit", "amount": amount, "reason": reason.pk, "token": token},
                HTTP_X_REQUEST_ID=request_id,
                **HTMX,
            )
            sent(response, request_id, 204)
        adjustment = Adjustment.objects.get(amount=D(amount))
        record = by(requested.one(adjustment, expected), w.csr, request_id)
        assert record.account_id == w.account.pk and D(record.after["amount"]) == D(amount)
        made.append(adjustment)

    client.force_login(w.supervisor)
    for adjustment, view, data, action, status in (
        (made[1], "adjustment-approve", {"approve-comment": "Fine"}, "adjustment.approve", "posted"),
        (made[2], "adjustment-reject", {"reject-comment": "Too much"}, "adjustment.reject", "rejected"),
    ):
        with trail() as decided:
            request_id = rid()
            response = client.post(reverse(view, args=[adjustment.pk]), data, HTTP_X_REQUEST_ID=request_id)
            sent(response, request_id, 302)
        record = by(decided.one(adjustment, action), w.supervisor, request_id)
        assert (record.before, record.after["status"]) == ({"status": "pending"}, status)


# --- cases and disputes (CSR pages and the portal) ---


def test_a_case_opened_assigned_moved_and_commented_on(client, w):
    client.force_login(w.csr)
    new = reverse("case-new", args=[w.account.number])
    token = _token(client.get(new).content.decode())
    with trail() as opened:
        request_id = rid()
        response = client.post(
            new,
            {
                "process": w.processes["billing-inquiry"].pk,
                "subject": "Why so high?",
                "description": "Up by 10.",
                "token": token,
            },
            HTTP_X_REQUEST_ID=request_id,
        )
        sent(response, request_id, 302)
    case = Case.objects.get()
    record = by(opened.one(case, "case.open"), w.csr, request_id)
    assert record.account_id == w.account.pk and record.after["status"] == "new"

    def post(name, data, user, action):
        client.force_login(user)
        with trail() as changed:
            request_id = rid()
            response = client.post(reverse(name, args=[case.number]), data, HTTP_X_REQUEST_ID=request_id)
            sent(response, request_id, 302)
        return by(changed.one(case, action), user, request_id)

    record = post("case-assign", {}, w.csr, "case.assign")
    assert (record.before, record.after) == ({"owner": None}, {"owner": w.csr.pk})
    record = post(
        "case-status", {"to_status": "waiting_on_customer", "expected_status": "new"}, w.csr, "case.status"
    )
    assert (record.before, record.after["status"]) == ({"status": "new"}, "waiting_on_customer")
    record = post(
        "case-comment", {"text": "Asked for the bill photo", "internal": "on"}, w.csr, "case.comment"
    )
    assert record.before["status"] == record.after["status"] == "waiting_on_customer"
    # The customer's reply in the portal moves the case back in progress: one record, with the change.
    client.force_login(w.customer)
    with trail() as replied:
        request_id = rid()
        response = client.post(
            reverse("portal:case-reply", args=[case.number]),
            {"text": "Here it is"},
            HTTP_X_REQUEST_ID=request_id,
        )
        sent(response, request_id, 302)
    record = by(replied.one(case, "case.comment"), w.customer, request_id)
    assert (record.before["status"], record.after["status"]) == ("waiting_on_customer", "in_progress")


def test_a_dispute_opened_and_resolved_on_the_csr_pages(client, w):
    line = w.line(2)
    client.force_login(w.csr)
    url = f"{reverse('dispute-new', args=[w.statement.pk])}?line={line.pk}"
    token = _token(client.get(url).content.decode())
    with trail() as opened:
        request_id = rid()
        response = client.post(
            url, {"amount": "25.00", "reason": "Never roamed.", "token": token}, HTTP_X_REQUEST_ID=request_id
        )
        sent(response, request_id, 302)
    dispute = Dispute.objects.get()
    by(opened.one(dispute.case, "case.open"), w.csr, request_id)
    record = by(opened.one(dispute, "dispute.open"), w.csr, request_id)
    assert record.account_id == w.account.pk and D(record.after["amount"]) == dispute.amount == D("25")
    record = by(opened.one(w.statement, "statement.disputed"), w.csr, request_id)
    assert (D(record.before["disputed_amount"]), D(record.after["disputed_amount"])) == (0, 25)

    client.force_login(w.supervisor)
    with trail() as resolved:
        request_id = rid()
        response = client.post(
            reverse("dispute-resolve", args=[dispute.case.number]),
            {"decision": "approve_full", "note": "Roaming was off."},
            HTTP_X_REQUEST_ID=request_id,
        )
        sent(response, request_id, 302)
    record = by(resolved.one(dispute, "dispute.resolve"), w.supervisor, request_id)
    assert (record.before, record.after["status"]) == ({"status": "open"}, "approved")
    record = by(resolved.one(dispute.case, "case.status"), w.supervisor, request_id)
    assert (record.before, record.after["status"]) == ({"status": "new"}, "resolved")
    credit = Adjustment.objects.get()
    by(resolved.one(credit, "adjustment.post"), w.supervisor, request_id)
    record = by(resolved.one(w.statement, "statement.disputed"), w.supervisor, request_id)
    assert D(record.after["disputed_amount"]) == 0


# --- the database refuses to change or delete audit records ---


@pytest.fixture
def stored(billing_admin_user):
    account = AccountFactory()
    records = [
        audit_record(
            actor=billing_admin_user,
            action="account.update",
            obj=account,
            before={"name": "A"},
            after={"name": str(i)},
            account_id=account.pk,
        )
        for i in range(3)
    ]
    return records


def _refused(call) -> None:
    with pytest.raises(IntegrityError, match="append-only"), transaction.atomic():
        call()


def _untouched(records) -> None:
    fresh = {
        r.pk: (r.action, r.actor_label, r.after)
        for r in AuditRecord.objects.filter(pk__in=[x.pk for x in records])
    }
    assert fresh == {r.pk: ("account.update", "billing-admin", {"name": r.after["name"]}) for r in records}


def test_the_orm_cannot_change_or_delete_audit_records(stored):
    queryset = AuditRecord.objects.filter(pk__in=[r.pk for r in stored])
    _refused(lambda: queryset.update(action="tampered"))
    _refused(lambda: queryset.delete())
    _refused(lambda: stored[0].delete())
    stored[1].after = {"name": "forged"}
    _refused(lambda: stored[1].save())
    stored[2].actor_label = "someone else"
    _refused(lambda: AuditRecord.objects.bulk_update([stored[2]], ["actor_label"]))
    _refused(lambda: AuditRecord.objects.all().delete())
    for record in stored:
        record.refresh_from_db()
    _untouched(stored)
    # Appending stays possible (the services' bulk writes).
    assert (
        len(
            AuditRecord.objects.bulk_create(
                [
                    AuditRecord(
                        actor_type="system", actor_label="t", action="x.y", object_type="a.b", object_id="1"
                    )
                ]
            )
        )
        == 1
    )


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE billing_mgmt_auditrecord SET after = NULL",
        "UPDATE billing_mgmt_auditrecord SET request_id = 'forged' WHERE id = {pk}",
        "DELETE FROM billing_mgmt_auditrecord WHERE id = {pk}",
        "DELETE FROM billing_mgmt_auditrecord",
        "TRUNCATE billing_mgmt_auditrecord",
        "TRUNCATE billing_mgmt_auditrecord CASCADE",
    ],
)
def test_raw_sql_cannot_change_delete_or_truncate_audit_records(stored, sql):
    with (
        pytest.raises(IntegrityError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        # As the application connects: without the escape hatch of the test flush (tests/conftest.py).
        cursor.execute("SET LOCAL billing_mgmt.allow_truncate = 'off'")
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # no deferred checks pending (TRUNCATE would refuse)
        cursor.execute(sql.format(pk=stored[0].pk))
    _untouched(stored)


def test_the_truncate_guard_is_a_trigger_of_the_table():
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT tgname FROM pg_trigger WHERE tgrelid = 'billing_mgmt_auditrecord'::regclass "
            "AND NOT tgisinternal ORDER BY tgname"
        )
        names = [row[0] for row in cursor.fetchall()]
    assert names == [
        "billing_mgmt_auditrecord_no_delete",
        "billing_mgmt_auditrecord_no_truncate",
        "billing_mgmt_auditrecord_no_update",
    ]


@pytest.mark.parametrize("who", ["billing-admin", "superuser"])
def test_the_admin_offers_no_add_change_or_delete_of_audit_records(client, stored, billing_admin_user, who):
    user = billing_admin_user
    if who == "superuser":
        user = UserFactory(username="root")
        user.is_staff = user.is_superuser = True
        user.save()
    client.force_login(user)
    record = stored[0]
    changelist = client.get(reverse("admin:billing_mgmt_auditrecord_changelist"))
    assert changelist.status_code == 200
    assert "delete_selected" not in changelist.content.decode()
    page = client.get(reverse("admin:billing_mgmt_auditrecord_change", args=[record.pk]))
    assert page.status_code == 200  # to read it
    html = page.content.decode()
    assert 'name="_save"' not in html and "deletelink" not in html
    change = reverse("admin:billing_mgmt_auditrecord_change", args=[record.pk])
    assert client.post(change, {"action": "tampered", "actor_label": "x"}).status_code == 403
    assert client.get(reverse("admin:billing_mgmt_auditrecord_add")).status_code == 403
    delete = reverse("admin:billing_mgmt_auditrecord_delete", args=[record.pk])
    assert client.get(delete).status_code == 403 and client.post(delete, {"post": "yes"}).status_code == 403
    bulk = client.post(
        reverse("admin:billing_mgmt_auditrecord_changelist"),
        {"action": "delete_selected", "_selected_action": [str(record.pk)], "post": "yes"},
    )
    assert bulk.status_code in (200, 302)
    _untouched(stored)


# --- the account's history on its page ---


def _history(client, account, page=None) -> str:
    url = reverse("account-section", args=[account.number, "history"]) + (f"?page={page}" if page else "")
    response = client.get(url, **HTMX)
    assert response.status_code == 200, response.status_code
    return response.content.decode()


def test_the_account_page_shows_the_accounts_history_newest_first_with_what_changed(client, w):
    client.force_login(w.csr)
    methods = reverse("payment-method-add", args=[w.account.number])
    client.post(methods, {"kind": "other", "description": "Cash desk"}, **HTMX)
    cash = PaymentMethod.objects.get()
    client.post(reverse("payment-method-remove", args=[w.account.number, cash.pk]), {"confirm": "on"}, **HTMX)
    # Another account's history stays on its own page.
    client.post(
        reverse("payment-method-add", args=[w.other_account.number]),
        {"kind": "other", "description": "Elsewhere"},
        **HTMX,
    )

    html = _history(client, w.account)
    rows = re.findall(r'<tr data-audit="(\d+)">(.*?)</tr>', html, re.S)
    ours = AuditRecord.objects.filter(account_id=w.account.pk).order_by("-created_at", "-id")
    assert [int(pk) for pk, _ in rows] == list(ours.values_list("pk", flat=True))
    assert "Elsewhere" not in html and "Changes 1–" in html and f"of {ours.count()}" in html
    newest = rows[0][1]
    assert "payment_method.remove" in newest and "csr1" in newest and "User" in newest
    assert re.search(r"<strong>removed at</strong>: — → \d{4}-\d\d-\d\d", newest), newest
    assert "<strong>is default</strong>: yes → no" in newest
    added = rows[1][1]
    assert "payment_method.add" in added and "<strong>description</strong>" not in added
    assert "<strong>kind</strong>: — → other" in added
    # On the account page it loads with its part, right after the page.
    page = client.get(reverse("account-detail", args=[w.account.number])).content.decode()
    assert 'id="section-history"' in page
    part = client.get(reverse("account-part", args=[w.account.number, "more"]), **HTMX).content.decode()
    assert 'data-part-section="history"' in part and f'data-audit="{rows[0][0]}"' in part


def test_the_history_is_paged_in_a_fixed_number_of_queries(client, csr_user, django_assert_max_num_queries):
    account = AccountFactory()
    client.force_login(csr_user)

    def add(count: int) -> None:
        AuditRecord.objects.bulk_create(
            AuditRecord(
                actor_type="system",
                actor_label="test",
                action="x.change",
                object_type="a.b",
                object_id=str(i),
                account_id=account.pk,
                before={"n": i},
                after={"n": i + 1},
            )
            for i in range(count)
        )

    add(3)
    _history(client, account)
    from django.db import connection as db
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(db) as few:
        small = _history(client, account)
    add(60)
    with django_assert_max_num_queries(len(few)):
        first = _history(client, account)
    assert small.count("data-audit=") == 3 and first.count("data-audit=") == 20
    assert "Changes 1–20 of 63" in first and "Page 1 of 4" in first
    last = _history(client, account, page=4)
    assert last.count("data-audit=") == 3 and "Changes 61–63 of 63" in last
    assert _history(client, account, page=99) == last  # past the end: the last page


@pytest.mark.parametrize("role", [roles.CSR, roles.SUPERVISOR, roles.BILLING_ADMIN])
def test_staff_roles_see_the_history_and_others_do_not(client, role):
    account = AccountFactory()
    audit_record(actor="test", action="x.change", obj=account, after={"n": 1}, account_id=account.pk)
    user = UserFactory(username=f"u-{role}".replace(" ", "-").lower(), role=role)
    client.force_login(user)
    assert "x.change" in _history(client, account)
    assert user.has_perm("billing_mgmt.view_auditrecord")


def test_without_the_permission_the_history_is_not_there(client, csr_user):
    account = AccountFactory()
    client.force_login(csr_user)
    Group.objects.get(name=roles.CSR).permissions.remove(
        Permission.objects.get(codename="view_auditrecord", content_type__app_label="billing_mgmt")
    )
    url = reverse("account-section", args=[account.number, "history"])
    assert client.get(url, **HTMX).status_code == 404
    page = client.get(reverse("account-detail", args=[account.number])).content.decode()
    assert 'id="section-history"' not in page
    customer = UserFactory(username="cust", role=roles.CUSTOMER)
    client.force_login(customer)
    assert client.get(url, **HTMX).status_code == 403
