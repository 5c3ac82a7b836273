"""Statement admin (read-only, lines a page at a time), balance snapshots (read-only), data retention (one
audited row)."""

from __future__ import annotations

import pytest
from django.urls import reverse

from billing_mgmt.models import AuditRecord
from statements.admin.statements import DataRetentionForm
from statements.models import BillerBalanceSnapshot, DataRetention, Statement, StatementLine
from statements.services import ingest_records
from tests.factories import statement_record

pytestmark = pytest.mark.django_db


@pytest.fixture
def ref(biller_reference_factory, biller_factory, account_factory):
    account = account_factory(name="Admin Statements Co")
    return biller_reference_factory(
        account=account, biller=biller_factory(code="telco", name="Telco Billing"), external_ref="T-9"
    )


def _ingest(ref, *records) -> list[int]:
    results = ingest_records(biller=ref.biller, records=list(records))
    assert [r.status for r in results] == ["accepted"] * len(records), [r.as_dict() for r in results]
    return [r.id for r in results]


@pytest.fixture
def statement(ref) -> Statement:
    [pk] = _ingest(ref, statement_record("T-9", "EXT-777", number="INV-777"))
    return Statement.objects.get(pk=pk)


def _many_lines(count: int) -> list[dict]:
    return [
        {"type": "usage", "product": f"Call {i:04d}", "amount": "0.10", "external_id": f"L{i}"}
        for i in range(1, count + 1)
    ]


# --- statements -------------------------------------------------------------------------------------------


def test_changelist_lists_statements(admin_client, statement, ref, django_assert_max_num_queries):
    _ingest(ref, *(statement_record("T-9", f"EXT-{i}", number=f"INV-{i}") for i in range(5)))
    url = reverse("admin:statements_statement_changelist")

    with django_assert_max_num_queries(12):
        response = admin_client.get(url)

    assert response.status_code == 200
    assert response.context["cl"].result_count == 6
    html = response.content.decode()
    assert "INV-777" in html and "2026-10-01 – 2026-10-31" in html and "40.50 USD" in html
    assert response.context["action_form"] is None  # no bulk delete


@pytest.mark.parametrize("query", ["INV-777", "EXT-777", "account"])
def test_changelist_search(admin_client, statement, ref, query):
    _ingest(ref, statement_record("T-9", "EXT-OTHER", number="INV-OTHER", statement_date="2026-10-31"))
    term = ref.account.number if query == "account" else query
    response = admin_client.get(reverse("admin:statements_statement_changelist"), {"q": term})
    found = {s.number for s in response.context["cl"].result_list}
    assert found == ({"INV-777", "INV-OTHER"} if query == "account" else {"INV-777"})


def test_changelist_filters(admin_client, statement, ref):
    url = reverse("admin:statements_statement_changelist")
    assert admin_client.get(url, {"status__exact": "open"}).context["cl"].result_count == 1
    assert admin_client.get(url, {"status__exact": "paid"}).context["cl"].result_count == 0
    assert admin_client.get(url, {"biller__id__exact": ref.biller_id}).context["cl"].result_count == 1
    assert admin_client.get(url, {"channel__exact": "api"}).context["cl"].result_count == 1
    assert admin_client.get(url, {"statement_date__year": "2026"}).context["cl"].result_count == 1


def test_change_view_shows_header_lines_and_usage_read_only(admin_client, statement):
    response = admin_client.get(reverse("admin:statements_statement_change", args=[statement.pk]))

    assert response.status_code == 200
    assert response.context["has_change_permission"] is False
    html = response.content.decode()
    assert "Unlimited Plan" in html and "International calls" in html and "Loyalty discount" in html
    assert "5120" in html  # data usage summary
    assert "40.50 USD" in html and "40.5000" not in html  # amounts in the currency's minor units
    assert f'href="/accounts/{statement.account.number}/"' in html
    assert response.context["line_pages"] is None
    assert 'name="lines-0-amount"' not in html and 'name="lines-0-DELETE"' not in html  # no editing


@pytest.mark.parametrize("client_fixture", ["admin_client", "superuser_client"])
def test_statements_cannot_be_added_changed_or_deleted(request, statement, client_fixture):
    client = request.getfixturevalue(client_fixture)
    add = reverse("admin:statements_statement_add")
    change = reverse("admin:statements_statement_change", args=[statement.pk])
    delete = reverse("admin:statements_statement_delete", args=[statement.pk])

    assert client.get(add).status_code == 403
    assert client.post(add, {"number": "X"}).status_code == 403
    assert client.post(change, {"number": "CHANGED", "status": "paid"}).status_code == 403
    assert client.get(delete).status_code == 403
    assert client.post(delete, {"post": "yes"}).status_code == 403

    fresh = Statement.objects.get(pk=statement.pk)
    assert (fresh.number, fresh.status) == ("INV-777", "open")
    assert StatementLine.objects.filter(statement=statement).count() == 3


def test_a_long_statement_shows_its_lines_a_page_at_a_time(admin_client, ref, monkeypatch):
    monkeypatch.setattr("statements.admin.statements.LINES_PER_PAGE", 4)
    [pk] = _ingest(ref, statement_record("T-9", "LONG", lines=_many_lines(10)))
    url = reverse("admin:statements_statement_change", args=[pk])

    def shown(response) -> list[str]:
        formset = next(f for f in response.context["inline_admin_formsets"] if f.opts.model is StatementLine)
        return [form.instance.product for form in formset.formset.forms]

    first = admin_client.get(url)
    assert shown(first) == ["Call 0001", "Call 0002", "Call 0003", "Call 0004"]
    assert first.context["line_pages"]["total"] == 10
    assert "Lines 1–4 of 10" in first.content.decode()
    assert first.context["line_pages"]["previous_url"] == ""

    second = admin_client.get(url + first.context["line_pages"]["next_url"])
    assert shown(second) == ["Call 0005", "Call 0006", "Call 0007", "Call 0008"]
    assert second.context["line_pages"]["previous_url"] == "?lines_page=1"

    last = admin_client.get(url, {"lines_page": "3"})
    assert shown(last) == ["Call 0009", "Call 0010"]
    assert "Lines 9–10 of 10" in last.content.decode()
    assert last.context["line_pages"]["next_url"] == ""

    assert shown(admin_client.get(url, {"lines_page": "junk"})) == shown(first)


# --- balance snapshots ------------------------------------------------------------------------------------


def test_balance_snapshots_are_read_only(admin_client, ref):
    _ingest(
        ref,
        {
            "type": "balance",
            "account": "T-9",
            "as_of": "2026-11-01T00:00:00Z",
            "amount": "12.30",
            "currency": "USD",
        },
    )
    snap = BillerBalanceSnapshot.objects.get()

    response = admin_client.get(reverse("admin:statements_billerbalancesnapshot_changelist"))
    assert response.status_code == 200
    assert "12.30 USD" in response.content.decode()
    assert admin_client.get(reverse("admin:statements_billerbalancesnapshot_add")).status_code == 403
    change = reverse("admin:statements_billerbalancesnapshot_change", args=[snap.pk])
    assert admin_client.get(change).context["has_change_permission"] is False
    assert admin_client.post(change, {"amount": "0"}).status_code == 403
    delete = reverse("admin:statements_billerbalancesnapshot_delete", args=[snap.pk])
    assert admin_client.post(delete, {"post": "yes"}).status_code == 403
    assert BillerBalanceSnapshot.objects.get().amount == snap.amount


# --- data retention ---------------------------------------------------------------------------------------


def test_data_retention_is_added_once_and_audited(admin_client, billing_admin_user):
    add = reverse("admin:statements_dataretention_add")
    changelist = reverse("admin:statements_dataretention_changelist")
    assert admin_client.get(changelist).context["has_add_permission"] is True
    assert admin_client.get(add).status_code == 200

    response = admin_client.post(add, {"usage_detail_days": "400"})

    assert response.status_code == 302
    setting = DataRetention.objects.get()
    assert setting.usage_detail_days == 400
    assert DataRetention.current() == setting
    audit = AuditRecord.objects.get(action="data_retention.create")
    assert (audit.actor_user, audit.before, audit.after) == (
        billing_admin_user,
        None,
        {"usage_detail_days": 400},
    )

    # A second row cannot be added: "Add" leads to the existing one.
    change = reverse("admin:statements_dataretention_change", args=[setting.pk])
    assert admin_client.get(add)["Location"] == change
    response = admin_client.post(add, {"usage_detail_days": "10"})
    assert (response.status_code, response["Location"]) == (302, change)
    assert list(DataRetention.objects.values_list("usage_detail_days", flat=True)) == [400]
    assert AuditRecord.objects.filter(action__startswith="data_retention").count() == 1
    assert admin_client.get(changelist).context["has_add_permission"] is False


def test_data_retention_change_is_audited_and_can_be_turned_off(admin_client):
    setting = DataRetention.objects.create(usage_detail_days=400)
    change = reverse("admin:statements_dataretention_change", args=[setting.pk])

    assert admin_client.post(change, {"usage_detail_days": "400"}).status_code == 302
    assert not AuditRecord.objects.filter(action="data_retention.update").exists()  # nothing changed

    assert admin_client.post(change, {"usage_detail_days": ""}).status_code == 302
    setting.refresh_from_db()
    assert setting.usage_detail_days is None
    audit = AuditRecord.objects.get(action="data_retention.update")
    assert (audit.before, audit.after) == ({"usage_detail_days": 400}, {"usage_detail_days": None})


@pytest.mark.parametrize("value", ["0", "-5", "abc"])
def test_data_retention_refuses_bad_values(admin_client, value):
    response = admin_client.post(reverse("admin:statements_dataretention_add"), {"usage_detail_days": value})
    assert response.status_code == 200
    assert "usage_detail_days" in response.context["adminform"].form.errors
    assert not DataRetention.objects.exists()
    assert not AuditRecord.objects.filter(action__startswith="data_retention").exists()


def test_data_retention_cannot_be_deleted(admin_client):
    setting = DataRetention.objects.create(usage_detail_days=30)
    delete = reverse("admin:statements_dataretention_delete", args=[setting.pk])
    assert admin_client.post(delete, {"post": "yes"}).status_code == 403
    assert DataRetention.objects.filter(pk=setting.pk).exists()


def test_data_retention_form_refuses_a_second_row():
    # The add page is closed once a row exists; the form checks again under a lock (two admins at once).
    DataRetention.objects.create(usage_detail_days=30)
    form = DataRetentionForm(data={"usage_detail_days": "60"})
    assert not form.is_valid()
    assert "already configured" in str(form.errors)
    assert DataRetentionForm(
        data={"usage_detail_days": "60"}, instance=DataRetention.objects.get()
    ).is_valid()
