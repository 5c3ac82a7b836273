"""Kernel admin: number series and the audit trail."""

import pytest
from django.db import transaction
from django.urls import reverse

from billing_mgmt.audit import audit_record
from billing_mgmt.middleware import _request_id
from billing_mgmt.models import AuditRecord, NumberSeries
from billing_mgmt.numbering import SeriesSpec, next_number


@pytest.mark.parametrize("model", ["numberseries", "auditrecord"])
def test_changelists_open_for_a_billing_admin(admin_client, account_factory, model):
    account_factory()  # takes an account number: a series exists
    audit_record(actor=None, action="x.y", obj=NumberSeries.objects.first())
    response = admin_client.get(reverse(f"admin:billing_mgmt_{model}_changelist"))
    assert response.status_code == 200
    assert response.context["cl"].result_count >= 1


def test_series_list_shows_the_next_number(admin_client, db):
    next_number("cases", SeriesSpec(name="Cases", prefix="C-", padding=4))
    next_number("cases")
    with transaction.atomic():
        next_number("invoices", SeriesSpec(name="Invoices", prefix="INV", padding=6, gapless=True))

    response = admin_client.get(reverse("admin:billing_mgmt_numberseries_changelist"))

    html = response.content.decode()
    assert '<td class="field-next_number">C-0003</td>' in html
    assert '<td class="field-next_number">INV000002</td>' in html


def test_new_series_can_be_created_with_a_start(admin_client):
    response = admin_client.post(
        reverse("admin:billing_mgmt_numberseries_add"),
        {
            "code": "credit-note",
            "name": "Credit notes",
            "prefix": "CN",
            "padding": "5",
            "next_value": "100",
            "gapless": "on",
        },
    )
    assert response.status_code == 302
    with transaction.atomic():
        assert next_number("credit-note") == "CN00100"


def test_existing_series_keeps_code_gapless_and_counter(admin_client, db):
    with transaction.atomic():
        next_number("invoices", SeriesSpec(name="Invoices", prefix="INV", padding=6, gapless=True))
    series = NumberSeries.objects.get(code="invoices")
    url = reverse("admin:billing_mgmt_numberseries_change", args=[series.pk])

    page = admin_client.get(url)
    assert set(page.context["adminform"].form.fields) == {"name", "prefix", "padding"}
    assert "INV000002" in page.content.decode()

    response = admin_client.post(
        url,
        {
            "code": "other",
            "name": "Tax invoices",
            "prefix": "TI",
            "padding": "4",
            "next_value": "1",
            "gapless": "",
        },
    )

    assert response.status_code == 302
    series.refresh_from_db()
    assert (series.code, series.name, series.prefix, series.padding) == ("invoices", "Tax invoices", "TI", 4)
    assert (series.gapless, series.next_value) == (True, 2)
    with transaction.atomic():
        assert next_number("invoices") == "TI0002"


def test_series_cannot_be_deleted(admin_client, db):
    series = NumberSeries.objects.create(code="s", name="S")
    response = admin_client.post(
        reverse("admin:billing_mgmt_numberseries_delete", args=[series.pk]), {"post": "yes"}
    )
    assert response.status_code == 403
    assert NumberSeries.objects.filter(pk=series.pk).exists()


@pytest.fixture
def records(account_factory, billing_admin_user):
    account = account_factory()
    token = _request_id.set("req-abc")
    try:
        mine = audit_record(
            actor=billing_admin_user, action="account.update", obj=account, account_id=account.pk
        )
    finally:
        _request_id.reset(token)
    system = audit_record(actor="nightly", action="ledger.balance_rebuild", obj=account)
    return mine, system


def test_audit_records_are_read_only(admin_client, records):
    mine, _ = records
    change = reverse("admin:billing_mgmt_auditrecord_change", args=[mine.pk])
    assert admin_client.get(change).status_code == 200
    assert admin_client.post(change, {"action": "tampered"}).status_code == 403
    assert admin_client.get(reverse("admin:billing_mgmt_auditrecord_add")).status_code == 403
    delete = reverse("admin:billing_mgmt_auditrecord_delete", args=[mine.pk])
    assert admin_client.post(delete, {"post": "yes"}).status_code == 403
    assert AuditRecord.objects.get(pk=mine.pk).action == "account.update"


@pytest.mark.parametrize(
    ("params", "expected_action"),
    [
        ({"q": "req-abc"}, "account.update"),
        ({"actor_type__exact": "system"}, "ledger.balance_rebuild"),
        ({"action": "ledger.balance_rebuild"}, "ledger.balance_rebuild"),
    ],
)
def test_audit_filters_and_search(admin_client, records, params, expected_action):
    response = admin_client.get(reverse("admin:billing_mgmt_auditrecord_changelist"), params)
    assert [r.action for r in response.context["cl"].result_list if r.pk in {x.pk for x in records}] == [
        expected_action
    ]


def test_audit_search_by_object_id(admin_client, records):
    mine, _ = records
    response = admin_client.get(reverse("admin:billing_mgmt_auditrecord_changelist"), {"q": mine.object_id})
    assert {r.pk for r in response.context["cl"].result_list} >= {r.pk for r in records}
    assert all(r.object_id == mine.object_id for r in response.context["cl"].result_list)
