"""Admin for cases: billing admins configure the service processes (audited; a used process keeps its code
and action and is never deleted), read cases with their history inline and disputes (never add, change or
delete them; a case links to its CSR page), and resume a billing suspension through the service (audited)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from accounts.models import BillingSuspension
from accounts.services import billing_suspend
from billing_mgmt.models import AuditRecord
from disputes.models import Case, CaseEvent, Dispute, ServiceProcess
from disputes.services import case_comment, case_open, dispute_open
from tests.disputes.builders import world

pytestmark = pytest.mark.django_db


@pytest.fixture
def w():
    return world()


@pytest.fixture
def cases(w):
    inquiry, _ = case_open(
        account=w.account, process=w.processes["billing-inquiry"], subject="Why is my bill higher?",
        description="It went up.", channel="csr", actor=w.csr,
    )  # fmt: skip
    case_comment(case=inquiry, actor=w.csr, text="Internal note for the team.", public=False)
    disputed, _ = dispute_open(
        statement=w.statement, line=w.line(2), amount="25.00", reason="I never roamed.", channel="portal",
        actor=w.customer,
    )  # fmt: skip
    return {"inquiry": inquiry, "dispute": disputed}


def url(model: str, action: str = "", pk=None, app: str = "disputes") -> str:
    base = f"/admin/{app}/{model}/"
    if pk is not None:
        base += f"{pk}/"
    return base + (f"{action}/" if action else "")


def process_data(process: ServiceProcess, **fields) -> dict:
    data = {
        "code": process.code,
        "name": process.name,
        "description": process.description,
        "action": process.action,
        "queue": process.queue,
        "service_level_hours": process.service_level_hours,
        "max_extension_days": process.max_extension_days,
        "portal": "on" if process.portal else "",
        "active": "on" if process.active else "",
        "position": process.position,
        "_save": "Save",
        **fields,
    }
    return {k: v for k, v in data.items() if v != ""}


# --- pages render -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        url("serviceprocess"),
        url("serviceprocess") + "?active__exact=1&action__exact=inquiry",
        url("case"),
        url("case") + "?overdue=yes",
        url("case") + "?overdue=no&state=open",
        url("case") + "?state=done&status__exact=new&q=CS-",
        url("dispute"),
        url("dispute") + "?status__exact=open",
        url("billingsuspension", app="accounts"),
        url("billingsuspension", app="accounts") + "?state=open",
        url("billingsuspension", app="accounts") + "?state=ended",
    ],
)
def test_changelists_render_for_a_billing_admin(admin_client, cases, path):
    response = admin_client.get(path)

    assert response.status_code == 200, path


def test_the_case_list_shows_what_a_billing_admin_looks_for(admin_client, cases, w):
    page = admin_client.get(url("case")).content.decode()

    for text in (cases["inquiry"].number, cases["dispute"].number, w.account.number, "Billing inquiry",
                 "Dispute a charge", "Billing", "Disputes"):  # fmt: skip
        assert text in page


def test_the_overdue_filter_finds_open_cases_past_their_due_time(admin_client, cases):
    Case.objects.filter(pk=cases["inquiry"].pk).update(due_at=timezone.now() - dt.timedelta(hours=2))

    overdue = admin_client.get(url("case") + "?overdue=yes").content.decode()
    on_time = admin_client.get(url("case") + "?overdue=no").content.decode()

    assert cases["inquiry"].number in overdue and cases["dispute"].number not in overdue
    assert cases["dispute"].number in on_time and cases["inquiry"].number not in on_time


def test_search_by_case_number_or_account_number(admin_client, cases, w):
    by_number = admin_client.get(url("case") + f"?q={cases['inquiry'].number}").content.decode()
    by_account = admin_client.get(url("case") + f"?q={w.other_account.number}").content.decode()

    assert cases["inquiry"].number in by_number and cases["dispute"].number not in by_number
    assert cases["inquiry"].number not in by_account


def test_a_case_is_read_only_with_its_history_and_a_link_to_the_csr_page(admin_client, cases):
    case = cases["inquiry"]

    response = admin_client.get(url("case", "change", case.pk))

    assert response.status_code == 200
    page = response.content.decode()
    assert f'href="/cases/{case.number}/"' in page
    assert "Internal note for the team." in page  # the whole history, internal notes too
    assert "It went up." in page
    assert 'name="_save"' not in page and 'name="status"' not in page
    assert "Delete" not in page


def test_a_dispute_case_links_its_dispute_and_the_dispute_renders(admin_client, cases):
    dispute = Dispute.objects.get(case=cases["dispute"])

    case_page = admin_client.get(url("case", "change", cases["dispute"].pk)).content.decode()
    page = admin_client.get(url("dispute", "change", dispute.pk))

    assert url("dispute", "change", dispute.pk) in case_page
    assert "25.00 USD" in case_page
    assert page.status_code == 200
    text = page.content.decode()
    assert "I never roamed." in text and "25.00 USD" in text and 'name="_save"' not in text


def test_cases_and_disputes_are_never_added_changed_or_deleted_in_admin(admin_client, cases):
    case = cases["inquiry"]
    dispute = Dispute.objects.get(case=cases["dispute"])
    events = CaseEvent.objects.count()

    assert admin_client.get(url("case", "add")).status_code == 403
    assert admin_client.get(url("case", "delete", case.pk)).status_code == 403
    assert admin_client.post(url("case", "delete", case.pk), {"post": "yes"}).status_code == 403
    bulk = {"action": "delete_selected", "_selected_action": [case.pk], "post": "yes"}
    admin_client.post(url("case"), bulk)
    assert admin_client.post(url("case", "change", case.pk), {"status": "closed"}).status_code == 403
    assert admin_client.get(url("dispute", "add")).status_code == 403
    assert admin_client.post(url("dispute", "delete", dispute.pk), {"post": "yes"}).status_code == 403

    case.refresh_from_db()
    assert case.status == "new" and Case.objects.count() == 2 and CaseEvent.objects.count() == events
    assert Dispute.objects.filter(pk=dispute.pk, status="open").exists()


def test_history_events_have_no_admin_of_their_own(admin_client, cases):
    assert admin_client.get("/admin/disputes/caseevent/").status_code == 404


def test_the_case_list_takes_a_fixed_number_of_queries(admin_client, cases, w, django_assert_max_num_queries):
    admin_client.get(url("case"))
    with django_assert_max_num_queries(20) as few:
        admin_client.get(url("case"))
    for i in range(10):
        case_open(account=w.other_account, process=w.processes["billing-inquiry"], subject=f"Q{i}",
                  channel="csr", actor=w.csr)  # fmt: skip
    with django_assert_max_num_queries(len(few.captured_queries)):
        assert admin_client.get(url("case")).status_code == 200


# --- the catalog --------------------------------------------------------------------------------------------


def test_a_service_process_is_edited_with_an_audit_record(admin_client, w):
    process = w.processes["billing-inquiry"]

    response = admin_client.post(
        url("serviceprocess", "change", process.pk),
        process_data(process, name="Question about a bill", service_level_hours=24, queue="Front office"),
    )

    assert response.status_code == 302, response.content.decode()[:3000]
    process.refresh_from_db()
    assert (process.name, process.service_level_hours, process.queue) == (
        "Question about a bill",
        24,
        "Front office",
    )
    record = AuditRecord.objects.get(action="service_process.update")
    assert (record.before["service_level_hours"], record.after["service_level_hours"]) == (48, 24)
    assert record.actor_label == "billing-admin"

    admin_client.post(url("serviceprocess", "change", process.pk), process_data(process))
    assert AuditRecord.objects.filter(action="service_process.update").count() == 1  # nothing changed


def test_a_service_process_is_added_and_an_unused_one_deleted_with_audit_records(admin_client, w):
    template = ServiceProcess(code="payment-plan", name="Payment plan", action="inquiry", queue="Billing",
                              service_level_hours=24, max_extension_days=30, portal=True, active=True,
                              position=50)  # fmt: skip

    response = admin_client.post(url("serviceprocess", "add"), process_data(template))

    assert response.status_code == 302, response.content.decode()[:3000]
    created = ServiceProcess.objects.get(code="payment-plan")
    assert AuditRecord.objects.filter(action="service_process.create", object_id=str(created.pk)).count() == 1
    assert admin_client.post(url("serviceprocess", "delete", created.pk), {"post": "yes"}).status_code == 302
    assert not ServiceProcess.objects.filter(code="payment-plan").exists()
    assert AuditRecord.objects.filter(action="service_process.delete").count() == 1


def test_the_list_edits_position_active_and_portal_audited(admin_client, w):
    processes = list(ServiceProcess.objects.order_by("position", "name"))
    form = {"form-TOTAL_FORMS": len(processes), "form-INITIAL_FORMS": len(processes), "_save": "Save"}
    for i, p in enumerate(processes):
        form[f"form-{i}-id"] = p.pk
        form[f"form-{i}-position"] = p.position
        if p.active:
            form[f"form-{i}-active"] = "on"
        if p.portal:
            form[f"form-{i}-portal"] = "on"
    suspend = next(i for i, p in enumerate(processes) if p.code == "suspend-billing")
    del form[f"form-{suspend}-portal"]

    response = admin_client.post(url("serviceprocess"), form)

    assert response.status_code == 302, response.content.decode()[:3000]
    assert ServiceProcess.objects.get(code="suspend-billing").portal is False
    record = AuditRecord.objects.get(action="service_process.update")
    assert (record.before["portal"], record.after["portal"]) == (True, False)


def test_a_used_process_keeps_its_code_and_action_and_is_never_deleted(admin_client, cases, w):
    process = w.processes["billing-inquiry"]

    page = admin_client.get(url("serviceprocess", "change", process.pk)).content.decode()
    assert 'name="code"' not in page and 'name="action"' not in page
    assert admin_client.get(url("serviceprocess", "delete", process.pk)).status_code == 403
    bulk = {"action": "delete_selected", "_selected_action": [process.pk], "post": "yes"}
    admin_client.post(url("serviceprocess"), bulk)
    assert ServiceProcess.objects.filter(pk=process.pk).exists()

    response = admin_client.post(
        url("serviceprocess", "change", process.pk),
        process_data(process, code="renamed", action="charge_dispute", active=""),
    )
    assert response.status_code == 302
    process.refresh_from_db()
    assert (process.code, process.action, process.active) == ("billing-inquiry", "inquiry", False)


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"service_level_hours": 0}, "service_level_hours", "At least one hour"),
        ({"action": "extend_due_date", "max_extension_days": 0}, "max_extension_days", "at least one day"),
    ],
)
def test_catalog_mistakes_are_form_errors(admin_client, w, fields, field, message):
    process = ServiceProcess.objects.create(code="new-one", name="New one")

    response = admin_client.post(url("serviceprocess", "change", process.pk), process_data(process, **fields))

    assert response.status_code == 200
    assert message in str(response.context["adminform"].form.errors[field])
    assert not AuditRecord.objects.filter(action="service_process.update").exists()


# --- billing suspensions ------------------------------------------------------------------------------------


def test_resume_billing_goes_through_the_service_and_is_audited(admin_client, w, billing_admin_user):
    open_one = billing_suspend(
        account=w.account, reason="Moving abroad", reference="CS-0000001", actor=w.supervisor
    )
    ended = billing_suspend(account=w.other_account, reason="Holiday", actor=w.supervisor)
    BillingSuspension.objects.filter(pk=ended.pk).update(ended_at=timezone.now(), end_note="Back")

    page = admin_client.get(url("billingsuspension", app="accounts")).content.decode()
    assert "Moving abroad" in page and "resume_billing" in page
    assert (
        admin_client.get(url("billingsuspension", "change", open_one.pk, app="accounts")).status_code == 200
    )

    response = admin_client.post(
        url("billingsuspension", app="accounts"),
        {"action": "resume_billing", "_selected_action": [open_one.pk, ended.pk]},
        follow=True,
    )

    assert response.status_code == 200
    messages = [str(m) for m in response.context["messages"]]
    assert any("Billing resumed for 1 account(s)" in m for m in messages)
    assert any("already ended" in m for m in messages)
    open_one.refresh_from_db()
    assert (open_one.ended_by, open_one.end_note) == (billing_admin_user, "Resumed in Django admin.")
    record = AuditRecord.objects.get(action="billing.resume")
    assert (record.actor_label, record.account_id) == ("billing-admin", w.account.pk)


def test_suspensions_are_history_never_added_changed_or_deleted(admin_client, w):
    suspension = billing_suspend(account=w.account, reason="Moving abroad", actor=w.supervisor)

    assert admin_client.get(url("billingsuspension", "add", app="accounts")).status_code == 403
    assert (
        admin_client.get(url("billingsuspension", "delete", suspension.pk, app="accounts")).status_code == 403
    )
    change = url("billingsuspension", "change", suspension.pk, app="accounts")
    assert admin_client.post(change, {"reason": "x"}).status_code == 403
    suspension.refresh_from_db()
    assert suspension.reason == "Moving abroad" and suspension.is_open


def test_a_csr_without_admin_access_cannot_resume(client, w):
    suspension = billing_suspend(account=w.account, reason="Moving abroad", actor=w.supervisor)
    client.force_login(w.supervisor)  # not is_staff: no Django admin

    response = client.post(
        url("billingsuspension", app="accounts"),
        {"action": "resume_billing", "_selected_action": [suspension.pk]},
    )

    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    suspension.refresh_from_db()
    assert suspension.is_open
