"""Admin for payments: reason codes and limits are configured (audited; a used reason is deactivated, never
deleted; the limits' constraints are form errors), payments, adjustments and payment methods are read-only,
and a payment method never shows its token."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group

from billing_mgmt import roles
from billing_mgmt.models import AuditRecord
from payments.models import Adjustment, AdjustmentLimit, AdjustmentReason, Payment, PaymentMethod
from payments.services import adjustment_request, payment_method_add, payment_post
from statements.models import Statement
from statements.services import transaction_post
from tests.factories import AccountFactory
from tests.invoicing.builders import _statement

pytestmark = pytest.mark.django_db
D = Decimal
TOKEN = "tok_live_SECRET_abc123"


@pytest.fixture
def admin_client(client, billing_admin_user):
    client.force_login(billing_admin_user)
    return client


@pytest.fixture
def account():
    return AccountFactory()


@pytest.fixture
def reason():
    return AdjustmentReason.objects.create(code="goodwill", name="Goodwill credit")


def url(model: str, action: str = "", pk=None) -> str:
    base = f"/admin/payments/{model}/"
    if pk is not None:
        base += f"{pk}/"
    return base + (f"{action}/" if action else "")


def audits(action: str) -> int:
    return AuditRecord.objects.filter(action=action).count()


# --- adjustment reasons -------------------------------------------------------------------------------------


def test_reasons_are_added_and_changed_with_an_audit_record(admin_client):
    data = {"code": "late-fee", "name": "Late fee", "direction": "debit", "active": "on", "_save": "Save"}
    response = admin_client.post(url("adjustmentreason", "add"), data)
    assert response.status_code == 302, response.content.decode()[:2000]
    reason = AdjustmentReason.objects.get(code="late-fee")
    assert audits("adjustment_reason.create") == 1

    admin_client.post(url("adjustmentreason", "change", reason.pk), {**data, "name": "Late payment fee"})
    reason.refresh_from_db()
    assert reason.name == "Late payment fee"
    record = AuditRecord.objects.get(action="adjustment_reason.update")
    assert (record.before["name"], record.after["name"]) == ("Late fee", "Late payment fee")

    admin_client.post(url("adjustmentreason", "change", reason.pk), {**data, "name": "Late payment fee"})
    assert audits("adjustment_reason.update") == 1  # nothing changed, nothing recorded


def test_an_unused_reason_may_be_deleted_with_an_audit_record(admin_client, reason):
    response = admin_client.post(url("adjustmentreason", "delete", reason.pk), {"post": "yes"})
    assert response.status_code == 302
    assert not AdjustmentReason.objects.filter(pk=reason.pk).exists()  # (the dispute credit's reason stays)
    assert audits("adjustment_reason.delete") == 1


def test_a_used_reason_is_deactivated_never_deleted_and_its_code_is_fixed(
    admin_client, reason, account, csr_user
):
    adjustment_request(
        account=account, direction="credit", amount="5.00", currency="USD", reason=reason,
        idempotency_key="a1", actor=csr_user,
    )  # fmt: skip

    assert admin_client.get(url("adjustmentreason", "delete", reason.pk)).status_code == 403
    assert admin_client.post(url("adjustmentreason", "delete", reason.pk), {"post": "yes"}).status_code == 403
    bulk = {"action": "delete_selected", "_selected_action": [reason.pk], "post": "yes"}
    admin_client.post(url("adjustmentreason"), bulk)
    assert AdjustmentReason.objects.filter(pk=reason.pk).exists()

    page = admin_client.get(url("adjustmentreason", "change", reason.pk)).content.decode()
    assert 'name="code"' not in page  # read-only once used
    data = {"code": "renamed", "name": "Goodwill credit", "direction": "both", "_save": "Save"}  # active off
    assert admin_client.post(url("adjustmentreason", "change", reason.pk), data).status_code == 302
    reason.refresh_from_db()
    assert (reason.code, reason.active) == ("goodwill", False)
    assert AuditRecord.objects.get(action="adjustment_reason.update").after["active"] is False


# --- adjustment limits --------------------------------------------------------------------------------------


def limit_data(**fields):
    return {"role": "", "user": "", "currency": "USD", "max_amount": "50.00", "_save": "Save", **fields}


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({}, "role", "Choose a role or a user."),
        ({"role": "ROLE", "user": "USER"}, "user", "not both"),
        ({"role": "ROLE", "max_amount": "-1.00"}, "max_amount", "cannot be negative"),
        ({"role": "ROLE", "max_amount": "1.234"}, "max_amount", "Too many decimals for USD"),
        ({"role": "ROLE", "currency": "XYZ"}, "currency", ""),
    ],
)
def test_limit_constraints_are_form_errors(admin_client, csr_user, fields, field, message):
    group = Group.objects.get(name=roles.CSR)
    fields = {k: {"ROLE": group.pk, "USER": csr_user.pk}.get(v, v) for k, v in fields.items()}

    response = admin_client.post(url("adjustmentlimit", "add"), limit_data(**fields))

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert field in errors and message in " ".join(errors[field]), errors
    assert not AdjustmentLimit.objects.exists() and audits("adjustment_limit.create") == 0


def test_one_limit_per_role_and_currency(admin_client):
    group = Group.objects.get_or_create(name=roles.CSR)[0]
    AdjustmentLimit.objects.create(role=group, currency="USD", max_amount=D("20.00"))
    response = admin_client.post(url("adjustmentlimit", "add"), limit_data(role=group.pk))
    assert response.status_code == 200
    assert response.context["adminform"].form.errors
    assert AdjustmentLimit.objects.count() == 1


def test_limits_are_added_changed_and_deleted_with_audit_records(admin_client, csr_user):
    response = admin_client.post(url("adjustmentlimit", "add"), limit_data(user=csr_user.pk))
    assert response.status_code == 302
    limit = AdjustmentLimit.objects.get()
    assert (limit.user, limit.max_amount) == (csr_user, D("50.00"))
    admin_client.post(
        url("adjustmentlimit", "change", limit.pk), limit_data(user=csr_user.pk, max_amount="75")
    )
    assert D(AuditRecord.objects.get(action="adjustment_limit.update").after["max_amount"]) == D("75")
    assert "User csr" in admin_client.get(url("adjustmentlimit")).content.decode()
    admin_client.post(url("adjustmentlimit", "delete", limit.pk), {"post": "yes"})
    assert not AdjustmentLimit.objects.exists()
    assert [audits(f"adjustment_limit.{a}") for a in ("create", "update", "delete")] == [1, 1, 1]


# --- read-only entries --------------------------------------------------------------------------------------


@pytest.fixture
def entries(account, reason, csr_user):
    statement = _statement(account, number="S-1", new_charges=D("50.00"), taxes=D(0))
    Statement.objects.filter(pk=statement.pk).update(due_date=dt.date(2099, 1, 1))
    transaction_post(
        account=account, kind="bill", amount=D("50.00"), currency="USD",
        effective_date=statement.statement_date, statement=statement, idempotency_key="bill:s1",
    )  # fmt: skip
    method = payment_method_add(
        account=account, kind="card", token=TOKEN, brand="Visa", last4="4242", expiry_month=12,
        expiry_year=2099, holder="Ann Example", actor=csr_user,
    )  # fmt: skip
    payment, _ = payment_post(
        account=account, amount="20.00", currency="USD", idempotency_key="p1", method=method,
        reference="CHQ-55", actor=csr_user,
    )  # fmt: skip
    adjustment, _ = adjustment_request(
        account=account, direction="credit", amount="5.00", currency="USD", reason=reason,
        idempotency_key="a1", note="Outage", actor=csr_user,
    )  # fmt: skip
    return payment, adjustment, method


@pytest.mark.parametrize("model", ["payment", "adjustment", "paymentmethod"])
def test_entries_are_read_only(admin_client, entries, model):
    obj = {"payment": entries[0], "adjustment": entries[1], "paymentmethod": entries[2]}[model]
    assert admin_client.get(url(model)).status_code == 200
    assert admin_client.get(url(model, "add")).status_code == 403
    page = admin_client.get(url(model, "change", obj.pk))
    assert page.status_code == 200 and 'name="_save"' not in page.content.decode()
    assert admin_client.post(url(model, "change", obj.pk), {"_save": "Save"}).status_code == 403
    assert admin_client.post(url(model, "delete", obj.pk), {"post": "yes"}).status_code == 403
    assert type(obj).objects.filter(pk=obj.pk).exists()


def test_payments_list_filters_search_and_allocations(admin_client, entries, account):
    payment = entries[0]
    listing = admin_client.get(url("payment"), {"q": account.number}).content.decode()
    assert "CHQ-55" in listing and f"/accounts/{account.number}/" in listing and "20.00 USD" in listing
    assert "CHQ-55" in admin_client.get(url("payment"), {"q": "CHQ-55"}).content.decode()
    assert "CHQ-55" not in admin_client.get(url("payment"), {"q": "nothing-like-it"}).content.decode()
    assert "CHQ-55" not in admin_client.get(url("payment"), {"status__exact": "reversed"}).content.decode()
    assert "CHQ-55" in admin_client.get(url("payment"), {"channel__exact": "csr"}).content.decode()
    assert "CHQ-55" not in admin_client.get(url("payment"), {"currency": "EUR"}).content.decode()
    page = admin_client.get(url("payment", "change", payment.pk)).content.decode()
    assert "S-1" in page and "20.00 USD" in page  # the allocation inline
    assert Payment.objects.get().allocations.count() == 1


def test_adjustments_list_filters_and_search(admin_client, entries, account):
    assert "Goodwill credit" in admin_client.get(url("adjustment"), {"q": account.number}).content.decode()
    assert "Goodwill credit" in admin_client.get(url("adjustment"), {"q": "Outage"}).content.decode()
    rows = admin_client.get(url("adjustment"), {"direction__exact": "debit"}).context["cl"].result_list
    assert list(rows) == []
    rows = admin_client.get(url("adjustment"), {"status__exact": "pending"}).context["cl"].result_list
    assert [a.pk for a in rows] == [entries[1].pk] and Adjustment.objects.get().status == "pending"


def test_payment_methods_show_brand_and_last_four_never_the_token(admin_client, entries, account):
    listing = admin_client.get(url("paymentmethod")).content.decode()
    assert "Visa •••• 4242" in listing and "12/2099" in listing
    assert TOKEN not in listing
    page = admin_client.get(url("paymentmethod", "change", entries[2].pk)).content.decode()
    assert TOKEN not in page and "Visa •••• 4242" in page
    assert "Visa" in admin_client.get(url("paymentmethod"), {"q": "4242"}).content.decode()
    assert "Visa" not in admin_client.get(url("paymentmethod"), {"removed": "yes"}).content.decode()
    assert PaymentMethod.objects.get().token == TOKEN


def test_a_csr_has_no_configuration_in_admin(client, csr_user, reason):
    client.force_login(csr_user)
    assert client.get(url("adjustmentreason", "add")).status_code in (302, 403)


# --- exports and autopay (payments.admin) ----------------------------------------------------------------


def test_a_dead_export_is_retried_from_admin_and_others_are_refused(admin_client, csr_user, settings):
    from django.urls import reverse

    from payments.models import ExportItem
    from payments.services import payment_post
    from tests.factories import AccountFactory, BillerFactory, BillerReferenceFactory

    biller = BillerFactory(
        code="pushy", export_mode="push", export_url="http://127.0.0.1:9/none", export_secret="x"
    )
    account = AccountFactory()
    BillerReferenceFactory(account=account, biller=biller)
    payment, _ = payment_post(
        account=account, amount="5.00", currency="USD", idempotency_key="k", actor=csr_user
    )
    item = ExportItem.objects.get(payment=payment)
    ExportItem.objects.filter(pk=item.pk).update(status="dead", attempts=8, last_error="HTTP 500")
    url = reverse("admin:payments_exportitem_changelist")
    page = admin_client.get(url)
    assert page.status_code == 200 and "HTTP 500" in page.content.decode()
    settings.CELERY_TASK_ALWAYS_EAGER = False  # queue, do not send, in this test
    response = admin_client.post(url, {"action": "retry", "_selected_action": [item.pk]}, follow=True)
    assert "1 export(s) queued again." in response.content.decode()
    item.refresh_from_db()
    assert (item.status, item.attempts) == ("pending", 0)
    again = admin_client.post(url, {"action": "retry", "_selected_action": [item.pk]}, follow=True)
    assert "Only a failed export is retried" in again.content.decode()
    assert admin_client.get(reverse("admin:payments_autopayattempt_changelist")).status_code == 200


def test_a_push_biller_needs_its_url_and_secret_in_admin(admin_client):
    from django.urls import reverse

    from accounts.models import Biller
    from billing_mgmt.models import AuditRecord

    data = {
        "code": "pushy",
        "name": "Pushy",
        "kind": "external",
        "active": "on",
        "pull_kind": "http",
        "pull_interval_minutes": "1440",
        "export_mode": "push",
        "export_url": "",
        "export_secret": "",
        "api_keys-TOTAL_FORMS": "0",
        "api_keys-INITIAL_FORMS": "0",
    }
    response = admin_client.post(reverse("admin:accounts_biller_add"), data)
    errors = response.context["adminform"].form.errors
    assert "export_url" in errors and "export_secret" in errors
    data |= {"export_url": "https://biller.example/exports", "export_secret": "topsecret"}
    response = admin_client.post(reverse("admin:accounts_biller_add"), data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    assert Biller.objects.get(code="pushy").export_secret == "topsecret"
    record = AuditRecord.objects.get(
        action="biller.create", object_id=str(Biller.objects.get(code="pushy").pk)
    )
    assert record.after["export_secret"] == "***"
