"""Cases and disputes: the state machine, disputes and their resolution (credits through payments), service
processes that act (due-date extension, billing suspension), past due without disputed amounts, e-mails."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.core import mail

from accounts.models import BillingSuspension
from billing_mgmt.audit import AuditRecord
from billing_mgmt.errors import ApplicationError, Conflict
from disputes import selectors
from disputes.models import Case, CaseEvent, Dispute
from disputes.services import (
    CASE_TRANSITIONS,
    allowed_transitions,
    billing_resume_for,
    case_assign,
    case_comment,
    case_email_send,
    case_emails_due,
    case_open,
    case_transition,
    dispute_open,
    dispute_resolve,
)
from payments.models import Adjustment, ExportItem
from statements.models import AccountBalance, FinancialTransaction, Statement
from statements.services import statements_mark_overdue
from tests.disputes.builders import world
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db
D = Decimal
S = Case.Status


@pytest.fixture
def w():
    return world()


def inquiry(w, *, actor=None, channel="csr", **kwargs):
    case, _ = case_open(
        account=w.account, process=w.processes["billing-inquiry"], subject="Why is my bill higher?",
        description="It went up by 10.", channel=channel, actor=actor or w.csr, **kwargs,
    )  # fmt: skip
    return case


def dispute(w, *, line=1, amount="25.00", actor=None, channel="portal"):
    case, _ = dispute_open(
        statement=w.statement, line=w.line(line) if line else None, amount=amount,
        reason="I never roamed.", channel=channel, actor=actor or w.customer,
    )  # fmt: skip
    return case


def receivable(account):
    return AccountBalance.objects.get(account=account, balance_type="receivable").amount


# --- cases and the state machine ----------------------------------------------------------------------


def test_a_case_gets_a_tracking_number_due_date_history_and_audit(w):
    case = inquiry(w)
    assert case.number.startswith("CS-") and case.status == S.NEW and case.queue == "Billing"
    assert case.channel == "csr" and case.created_by == w.csr
    assert case.contact_email == "alice@example.com"  # the primary contact
    hours = (case.due_at - case.created_at).total_seconds() / 3600
    assert round(hours) == w.processes["billing-inquiry"].service_level_hours
    [event] = case.events.all()
    assert (event.kind, event.to_status, event.actor, event.public) == ("created", "new", w.csr, True)
    assert AuditRecord.objects.filter(action="case.open", object_id=str(case.pk)).count() == 1
    second = inquiry(w)
    assert second.number != case.number


ALL = list(S.values)
TRANSITION_TABLE = [(a, b, b in CASE_TRANSITIONS[a]) for a in ALL for b in ALL if a != b]


@pytest.mark.parametrize(("start", "to", "allowed"), TRANSITION_TABLE)
def test_state_machine(w, start, to, allowed):
    case = inquiry(w)
    Case.objects.filter(pk=case.pk).update(status=start)
    case.refresh_from_db()
    events = case.events.count()
    if allowed:
        case = case_transition(case=case, to_status=to, actor=w.csr, resolution="Explained the new plan.")
        assert case.status == to
        assert case.events.filter(kind="status", from_status=start, to_status=to).count() == 1
    else:
        with pytest.raises(Conflict) as refused:
            case_transition(case=case, to_status=to, actor=w.csr, resolution="x")
        assert refused.value.code == "transition_not_allowed"
        case.refresh_from_db()
        assert case.status == start and case.events.count() == events  # nothing changed


def test_the_table_itself():
    assert CASE_TRANSITIONS[S.CLOSED] == ()
    assert S.NEW not in {to for targets in CASE_TRANSITIONS.values() for to in targets}  # never back to new
    assert set(CASE_TRANSITIONS) == set(S.values)


def test_unknown_status_same_status_and_stale_status_are_refused(w):
    case = inquiry(w)
    with pytest.raises(ApplicationError) as unknown:
        case_transition(case=case, to_status="done", actor=w.csr)
    assert unknown.value.fields == {"status": ["Unknown status."]}
    with pytest.raises(Conflict):
        case_transition(case=case, to_status=S.NEW, actor=w.csr)
    case_transition(case=case, to_status=S.IN_PROGRESS, actor=w.csr)
    with pytest.raises(Conflict) as stale:
        case_transition(case=case, to_status=S.WAITING_ON_CUSTOMER, actor=w.supervisor, expected_status=S.NEW)
    assert stale.value.code == "stale_status"


def test_rejecting_needs_a_reason_and_picking_up_assigns(w):
    case = inquiry(w)
    with pytest.raises(ApplicationError) as bare:
        case_transition(case=case, to_status=S.REJECTED, actor=w.csr)
    assert "resolution" in bare.value.fields
    case = case_transition(case=case, to_status=S.IN_PROGRESS, actor=w.csr)
    assert case.owner == w.csr


def test_customers_and_users_without_the_permission_cannot_change_status(w):
    case = inquiry(w)
    with pytest.raises(ApplicationError) as refused:
        case_transition(case=case, to_status=S.RESOLVED, actor=w.customer)
    assert refused.value.code == "permission_denied"
    assert Case.objects.get(pk=case.pk).status == S.NEW


def test_comments_internal_notes_and_a_customer_reply_moves_a_waiting_case(w):
    case = inquiry(w)
    case_transition(case=case, to_status=S.WAITING_ON_CUSTOMER, actor=w.csr, comment="Which month?")
    note = case_comment(case=case, actor=w.csr, text="Customer sounded upset.", public=False)
    assert note.public is False
    reply = case_comment(case=case, actor=w.customer, text="October.", public=False)
    assert reply.public is True  # a customer cannot write internal notes
    case.refresh_from_db()
    assert case.status == S.IN_PROGRESS
    assert [e.kind for e in selectors.case_history(case=case, public_only=True)] == [
        "created", "comment", "status", "comment", "status",
    ]  # fmt: skip
    with pytest.raises(ApplicationError):
        case_comment(case=case, actor=w.csr, text="   ")


def test_assigning_to_staff_only(w):
    case = inquiry(w)
    case_assign(case=case, owner=w.supervisor, actor=w.csr)
    assert Case.objects.get(pk=case.pk).owner == w.supervisor
    with pytest.raises(ApplicationError):
        case_assign(case=case, owner=w.customer, actor=w.csr)


def test_an_idempotency_key_returns_the_first_case(w):
    first = inquiry(w, idempotency_key="k-1")
    again, created = case_open(
        account=w.account, process=w.processes["billing-inquiry"], subject="other", channel="api",
        actor=w.csr, idempotency_key="k-1",
    )  # fmt: skip
    assert (again.pk, created) == (first.pk, False)
    with pytest.raises(Conflict):
        case_open(account=w.other_account, process=w.processes["billing-inquiry"], subject="x", channel="csr",
                  actor=w.csr, idempotency_key="k-1")  # fmt: skip


def test_bad_case_input_is_refused_with_field_errors(w):
    with pytest.raises(ApplicationError) as bad:
        case_open(account=w.account, process=w.processes["billing-inquiry"], subject=" ", channel="csr",
                  actor=w.csr, statement=w.other_statement)  # fmt: skip
    assert set(bad.value.fields) == {"subject", "statement"}
    w.processes["billing-inquiry"].active = False
    w.processes["billing-inquiry"].save()
    with pytest.raises(ApplicationError) as inactive:
        inquiry(w)
    assert "process" in inactive.value.fields
    assert Case.objects.count() == 0


# --- disputes ----------------------------------------------------------------------------------------


def test_a_dispute_opens_a_charge_dispute_case_and_holds_its_amount(w):
    case = dispute(w, line=2, amount="25.00")
    assert case.process.action == "charge_dispute" and case.channel == "portal" and case.queue == "Disputes"
    d = case.dispute
    assert (d.amount, d.status, d.statement_line, d.raised_by) == (D("25.00"), "open", w.line(2), w.customer)
    assert d.line_label.startswith("Roaming")
    assert Statement.objects.get(pk=w.statement.pk).disputed_amount == D("25.00")
    assert case.contact_email == "alice@example.com"


@pytest.mark.parametrize(
    ("line", "amount", "field"),
    [
        (2, "25.01", "amount"),  # more than the line
        (2, "0", "amount"),
        (2, "-1", "amount"),
        (2, "1.001", "amount"),
        (2, "abc", "amount"),
        (None, "75.01", "amount"),  # more than the statement's charges
    ],
)
def test_bad_disputes_are_refused_and_nothing_changes(w, line, amount, field):
    with pytest.raises(ApplicationError) as bad:
        dispute(w, line=line, amount=amount)
    assert field in bad.value.fields
    assert (Case.objects.count(), Dispute.objects.count()) == (0, 0)
    assert Statement.objects.get(pk=w.statement.pk).disputed_amount == 0


def test_one_open_dispute_per_line_and_the_statement_total_is_a_ceiling(w):
    dispute(w, line=1, amount="40.00")
    with pytest.raises(ApplicationError) as twice:
        dispute(w, line=1, amount="1.00")
    assert twice.value.fields == {"line": ["This line already has an open dispute."]}
    dispute(w, line=2, amount="25.00")
    with pytest.raises(ApplicationError) as whole:
        dispute(w, line=None, amount="10.01")  # 75.00 of charges, 65.00 already held
    assert "amount" in whole.value.fields
    dispute(w, line=None, amount="10.00")
    assert Statement.objects.get(pk=w.statement.pk).disputed_amount == D("75.00")
    assert Case.objects.count() == 3


def test_a_dispute_on_another_accounts_statement_line_is_refused(w):
    with pytest.raises(ApplicationError) as bad:
        dispute_open(statement=w.statement, line=w.line(1, w.other_statement), amount="5.00", reason="x",
                     channel="csr", actor=w.csr)  # fmt: skip
    assert "line" in bad.value.fields


def test_partial_approval_posts_the_right_credit_exported_like_any_adjustment(w, settings):
    before = receivable(w.account)
    case = dispute(w, line=2, amount="25.00")
    d = dispute_resolve(dispute=case.dispute, actor=w.supervisor, approve=True, amount="15.00", note="Half.")
    assert (d.status, d.approved_amount, d.resolved_by) == ("partially_approved", D("15.00"), w.supervisor)
    adj = d.adjustment
    assert (adj.direction, adj.amount, adj.status, adj.maker, adj.checker) == (
        "credit", D("15.00"), "posted", w.customer, w.supervisor,
    )  # fmt: skip
    assert adj.statement_line == w.line(2) and adj.reason.code == "dispute"
    row = adj.transaction
    assert (row.kind, row.amount) == (FinancialTransaction.Kind.DISPUTE_CREDIT, D("-15.00"))
    assert receivable(w.account) == before - D("15.00")
    assert Statement.objects.get(pk=w.statement.pk).disputed_amount == 0
    case.refresh_from_db()
    assert case.status == S.RESOLVED and "15.00" in case.resolution and case.decided_at
    assert list(case.events.values_list("kind", flat=True)) == ["created", "dispute", "status"]


def test_a_dispute_credit_of_an_externally_billed_account_is_exported(w):
    from accounts.models import BillerReference
    from tests.factories import BillerFactory

    biller = BillerFactory(code="ext", export_mode="poll")
    BillerReference.objects.create(account=w.account, biller=biller, external_ref="X-1")
    case = dispute(w, line=1, amount="40.00")
    d = dispute_resolve(dispute=case.dispute, actor=w.supervisor, approve=True)
    assert d.status == "approved" and d.approved_amount == D("40.00")
    assert ExportItem.objects.filter(adjustment=d.adjustment, kind="adjustment").count() == 1


def test_rejection_needs_a_reason_and_releases_the_hold_without_credit(w):
    case = dispute(w, line=2)
    with pytest.raises(ApplicationError):
        dispute_resolve(dispute=case.dispute, actor=w.supervisor, approve=False)
    d = dispute_resolve(dispute=case.dispute, actor=w.supervisor, approve=False, note="Roaming was used.")
    assert (d.status, d.adjustment) == ("rejected", None)
    assert Statement.objects.get(pk=w.statement.pk).disputed_amount == 0
    assert Case.objects.get(pk=case.pk).status == S.REJECTED
    assert Adjustment.objects.count() == 0


def test_who_may_resolve_and_a_second_resolution(w):
    case = dispute(w, line=2, actor=w.supervisor, channel="csr")
    with pytest.raises(ApplicationError) as csr:
        dispute_resolve(dispute=case.dispute, actor=w.csr, approve=True)
    assert csr.value.code == "not_a_supervisor"
    with pytest.raises(ApplicationError) as own:
        dispute_resolve(dispute=case.dispute, actor=w.supervisor, approve=True)
    assert own.value.code == "maker_cannot_check"
    with pytest.raises(ApplicationError):
        dispute_resolve(
            dispute=case.dispute, actor=UserFactory(role="Supervisor"), approve=True, amount="25.01"
        )
    other_supervisor = UserFactory(role="Supervisor")
    dispute_resolve(dispute=case.dispute, actor=other_supervisor, approve=True)
    with pytest.raises(Conflict):
        dispute_resolve(dispute=case.dispute, actor=other_supervisor, approve=True)
    assert Adjustment.objects.count() == 1


def test_a_dispute_case_is_decided_by_its_dispute_only(w):
    case = dispute(w)
    for status in (S.RESOLVED, S.REJECTED):
        with pytest.raises(ApplicationError) as refused:
            case_transition(case=case, to_status=status, actor=w.supervisor, resolution="x")
        assert refused.value.code == "dispute_open"
    case_transition(case=case, to_status=S.IN_PROGRESS, actor=w.csr)  # working on it is fine
    assert S.RESOLVED not in allowed_transitions(case=case, user=w.supervisor)


def test_a_biller_may_not_replace_a_statement_while_disputed(w):
    from statements.services.ingest import _locked_reason

    dispute(w)
    assert _locked_reason(Statement.objects.get(pk=w.statement.pk)) == "it is disputed"


# --- past due, autopay and collections ----------------------------------------------------------------


def test_past_due_excludes_disputed_amounts(w):
    today = dt.date(2026, 12, 1)  # the statement was due on 2026-11-15
    [before] = selectors.account_past_due(account=w.account, today=today)
    assert (before.past_due, before.disputed, before.statements) == (D("75.00"), D(0), 1)
    dispute(w, line=2, amount="25.00")
    [after] = selectors.account_past_due(account=w.account, today=today)
    assert (after.past_due, after.disputed) == (D("50.00"), D("25.00"))


def test_a_fully_disputed_statement_is_not_marked_overdue(w):
    other = w.other_statement
    dispute_open(statement=other, line=other.lines.get(), amount="30.00", reason="Never ordered.",
                 channel="csr", actor=w.csr)  # fmt: skip
    dispute(w, line=2)  # only part of this one
    statements_mark_overdue(today=dt.date(2026, 12, 1))
    assert Statement.objects.get(pk=other.pk).status == "open"
    assert Statement.objects.get(pk=w.statement.pk).status == "overdue"


def test_autopay_takes_only_what_is_not_disputed(w):
    from payments.services import _autopay_amount

    dispute(w, line=2, amount="25.00")
    assert _autopay_amount(Statement.objects.get(pk=w.statement.pk)) == D("50.00")


# --- service processes that act ----------------------------------------------------------------------


def extension(w, days=10, actor=None):
    wanted = w.statement.due_date + dt.timedelta(days=days)
    case, _ = case_open(account=w.account, process=w.processes["extend_due_date"], subject="More time",
                        channel="portal", actor=actor or w.customer, statement=w.statement,
                        requested_due_date=wanted)  # fmt: skip
    return case, wanted


def test_an_approved_extension_moves_the_due_date_and_says_so_in_history(w):
    Statement.objects.filter(pk=w.statement.pk).update(status="overdue")
    case, wanted = extension(w, days=30)
    with pytest.raises(ApplicationError) as csr:
        case_transition(case=case, to_status=S.RESOLVED, actor=w.csr)
    assert csr.value.code == "not_a_supervisor"
    case_transition(case=case, to_status=S.RESOLVED, actor=w.supervisor)
    statement = Statement.objects.get(pk=w.statement.pk)
    assert statement.due_date == wanted
    assert statement.status == ("open" if wanted >= dt.date.today() else "overdue")
    action = case.events.get(kind="action")
    assert "2026-11-15" in action.text and f"{wanted:%Y-%m-%d}" in action.text
    assert AuditRecord.objects.filter(action="statement.due_date", object_id=str(statement.pk)).count() == 1
    # reopened and resolved again: the due date does not move twice
    case_transition(case=Case.objects.get(pk=case.pk), to_status=S.IN_PROGRESS, actor=w.csr)
    case_transition(case=Case.objects.get(pk=case.pk), to_status=S.RESOLVED, actor=w.csr)
    assert Statement.objects.get(pk=w.statement.pk).due_date == wanted


@pytest.mark.parametrize("days", [0, -1, 31])
def test_an_extension_outside_the_allowed_window_is_refused(w, days):
    with pytest.raises(ApplicationError) as bad:
        extension(w, days=days)
    assert "requested_due_date" in bad.value.fields


def test_a_rejected_extension_changes_nothing(w):
    case, _ = extension(w)
    case_transition(case=case, to_status=S.REJECTED, actor=w.supervisor, resolution="Already extended once.")
    assert Statement.objects.get(pk=w.statement.pk).due_date == dt.date(2026, 11, 15)


def suspension_case(w):
    case, _ = case_open(account=w.account, process=w.processes["suspend_billing"], subject="Moving abroad",
                        channel="csr", actor=w.csr)  # fmt: skip
    return case


def test_an_approved_suspension_is_recorded_and_resumed_by_a_supervisor(w):
    case = suspension_case(w)
    case_transition(case=case, to_status=S.RESOLVED, actor=w.supervisor, resolution="Until March.")
    suspension = BillingSuspension.objects.get(account=w.account, ended_at__isnull=True)
    assert suspension.reference == case.number
    with pytest.raises(Conflict):
        suspension_case(w)  # already suspended
    billing_resume_for(account=w.account, actor=w.supervisor, note="Back home.")
    assert not BillingSuspension.objects.filter(account=w.account, ended_at__isnull=True).exists()
    assert case.events.filter(kind="action", text__contains="resumed").count() == 1
    with pytest.raises(ApplicationError):
        billing_resume_for(account=w.account, actor=w.csr)


# --- e-mails -------------------------------------------------------------------------------------------


def test_emails_with_the_tracking_number_on_creation_and_every_status_change(
    w, eager, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        case = inquiry(w, actor=w.customer, channel="portal")
    assert len(mail.outbox) == 1
    created = mail.outbox[0]
    assert case.number in created.subject and case.number in created.body
    assert created.to == ["alice@example.com"]
    assert f"/portal/cases/{case.number}/" in created.body
    with django_capture_on_commit_callbacks(execute=True):
        case_transition(case=case, to_status=S.IN_PROGRESS, actor=w.csr)
        case_comment(case=case, actor=w.csr, text="internal", public=False)
        case_transition(case=Case.objects.get(pk=case.pk), to_status=S.RESOLVED, actor=w.csr,
                        resolution="The plan price changed in October.")  # fmt: skip
    assert [m.subject for m in mail.outbox[1:]] == [
        f"Your request {case.number} is in progress",
        f"Your request {case.number} is resolved",
    ]
    assert "The plan price changed in October." in mail.outbox[2].body
    assert mail.outbox[2].alternatives and case.number in mail.outbox[2].alternatives[0][0]
    assert CaseEvent.objects.filter(email_sent_at__isnull=False).count() == 3


def test_an_email_is_sent_once_and_lost_tasks_are_found(w):
    case = inquiry(w)  # on_commit callbacks not run: the task was "lost"
    event = case.events.get()
    assert case_emails_due() == []  # not yet: its task may still be on its way
    assert case_emails_due(older_than=dt.timedelta(0)) == [event.pk]
    assert case_email_send(event_id=event.pk) == "sent"
    assert case_email_send(event_id=event.pk) == "skipped"
    assert len(mail.outbox) == 1 and case_emails_due(older_than=dt.timedelta(0)) == []


def test_no_email_without_an_address(w):
    w.account.contacts.update(email="")
    case = inquiry(w)
    assert case.contact_email == "" and case.events.get().email_to == ""


def test_history_is_append_only_in_the_database(w):
    from django.db import IntegrityError, transaction

    case = inquiry(w)
    event = case.events.get()
    with pytest.raises(IntegrityError), transaction.atomic():
        CaseEvent.objects.filter(pk=event.pk).update(text="rewritten")
    with pytest.raises(IntegrityError), transaction.atomic():
        CaseEvent.objects.filter(pk=event.pk).delete()
