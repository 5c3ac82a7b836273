"""Usage record admin: read-only, rejected records easy to find, reprocessed with an action."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib import admin
from django.contrib.messages import get_messages
from django.urls import reverse

from billing_mgmt import roles
from billing_mgmt.models import AuditRecord
from billruns.models import Subscription, UsageRecord, UsageType
from billruns.services import subscription_rate
from billruns.services.usage import usage_records_ingest
from tests.billruns import builders as b
from tests.factories import AccountFactory

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:billruns_usagerecord_changelist")
JUNE_1 = dt.date(2026, 6, 1)


def record(external_id, **overrides):
    return {
        "external_id": external_id,
        "usage_type": "voice",
        "quantity": "3",
        "unit": "min",
        "event_time": "2026-06-05T12:00:00Z",
        "service_identifier": "+1000",
        **overrides,
    }


@pytest.fixture
def sub():
    plan = b.plan()
    b.usage_component(plan, unit_price="0.10")
    return b.subscription(AccountFactory(), plan, JUNE_1, identifier="+1000")


@pytest.fixture
def records(sub):
    answers = usage_records_ingest(
        records=[
            record("ok-1"),
            record("ok-2", event_time="2026-07-02T12:00:00Z"),
            record("unit", unit="minutes"),
            record("nosub", service_identifier="+9999"),
        ],
        source="mediation",
        actor="test",
    )
    assert [a.outcome for a in answers] == ["created", "created", "rejected", "rejected"]
    return {r.external_id: r for r in UsageRecord.objects.all()}


def listed(response) -> set[str]:
    assert response.status_code == 200
    return {r.external_id for r in response.context["cl"].result_list}


def test_changelist_shows_records_with_their_rejection(
    admin_client, records, sub, django_assert_max_num_queries
):
    usage_records_ingest(records=[record(f"more-{n}") for n in range(20)], source="mediation", actor="test")

    with django_assert_max_num_queries(14):
        response = admin_client.get(CHANGELIST)

    assert response.context["cl"].result_count == 24
    html = response.content.decode()
    assert "Usage type &#x27;voice&#x27; is measured in &#x27;min&#x27;, not &#x27;minutes&#x27;." in html
    assert "no_subscription" in html
    assert f"{sub.pk} ({sub.account.number})" in html
    if admin.site.is_registered(Subscription):  # linked to the subscription's admin page
        assert reverse("admin:billruns_subscription_change", args=[sub.pk]) in html


def test_rejected_records_are_easy_to_find(admin_client, records):
    assert listed(admin_client.get(CHANGELIST, {"status": "rejected"})) == {"unit", "nosub"}
    assert listed(admin_client.get(CHANGELIST, {"rejection_code": "wrong_unit"})) == {"unit"}
    assert listed(admin_client.get(CHANGELIST, {"status": "accepted"})) == {"ok-1", "ok-2"}
    assert listed(admin_client.get(CHANGELIST, {"event_date__month": "7", "event_date__year": "2026"})) == {
        "ok-2"
    }


def test_rated_records_are_listed_as_rated_with_their_segment(admin_client, records, sub):
    (segment,) = [
        s
        for s in subscription_rate(subscription=sub, bill_as_of=dt.date(2026, 7, 1)).created
        if s.lines.exists()
    ]

    assert listed(admin_client.get(CHANGELIST, {"status": "rated"})) == {"ok-1"}
    assert listed(admin_client.get(CHANGELIST, {"status": "accepted"})) == {"ok-2"}  # July's, still waiting
    page = admin_client.get(CHANGELIST)
    assert page.status_code == 200
    assert "Rated" in page.content.decode() and "Accepted (waiting for rating)" in page.content.decode()
    change = admin_client.get(reverse("admin:billruns_usagerecord_change", args=[records["ok-1"].pk]))
    assert f'<div class="readonly">{segment.pk}</div>' in change.content.decode()


@pytest.mark.parametrize(("term", "found"), [("mediation", 4), ("nosub", 1), ("+9999", 1), ("other", 0)])
def test_search_by_source_external_id_and_service_identifier(admin_client, records, term, found):
    assert len(listed(admin_client.get(CHANGELIST, {"q": term}))) == found


def test_records_are_read_only(admin_client, records):
    row = records["unit"]
    url = reverse("admin:billruns_usagerecord_change", args=[row.pk])

    page = admin_client.get(url)
    post = admin_client.post(url, {"quantity": "1"})

    assert page.status_code == 200
    assert 'name="quantity"' not in page.content.decode() and "wrong_unit" in page.content.decode()
    assert post.status_code == 403
    assert admin_client.get(reverse("admin:billruns_usagerecord_add")).status_code == 403
    assert admin_client.post(reverse("admin:billruns_usagerecord_delete", args=[row.pk])).status_code == 403
    assert UsageRecord.objects.get(pk=row.pk).quantity == 3


def test_the_reprocess_action_matches_selected_records_again(admin_client, records, billing_admin_user):
    UsageType.objects.filter(code="voice").update(unit="minutes")  # the fix: now "ok" records would not fit
    selected = [records["unit"].pk, records["nosub"].pk, records["ok-1"].pk]

    response = admin_client.post(
        CHANGELIST, {"action": "reprocess", "_selected_action": selected}, follow=True
    )

    assert [str(m) for m in get_messages(response.wsgi_request)] == [
        "Reprocessed: 1 accepted, 1 still rejected, 1 skipped (not rejected)."
    ]
    statuses = dict(UsageRecord.objects.values_list("external_id", "status"))
    assert statuses == {"ok-1": "accepted", "ok-2": "accepted", "unit": "accepted", "nosub": "rejected"}
    audit = AuditRecord.objects.get(action="usage_record.reprocess")
    assert (audit.object_id, audit.actor_user) == (str(records["unit"].pk), billing_admin_user)


def test_staff_without_change_permission_see_records_but_not_the_action(client, user_factory, records):
    client.force_login(user_factory(username="csr-admin", role=roles.CSR, is_staff=True))

    response = client.get(CHANGELIST)

    assert response.status_code == 200
    assert response.context["action_form"] is None
    posted = client.post(CHANGELIST, {"action": "reprocess", "_selected_action": [records["unit"].pk]})
    assert posted.status_code in (200, 302)
    assert UsageRecord.objects.get(pk=records["unit"].pk).rejection_code == "wrong_unit"
    assert not AuditRecord.objects.filter(action="usage_record.reprocess").exists()
