"""The Help Center (the service processes offered in the portal and their request forms) and the Cases tab
(the customer's cases, one case with its public history, and replying)."""

from __future__ import annotations

import datetime as dt

import pytest

from accounts.services import billing_suspend
from disputes.models import Case, CaseEvent
from disputes.services import case_comment, case_open, case_transition, dispute_open, dispute_resolve
from portal.views import service_level_text
from statements.models import Statement

from .conftest import body, form_token

pytestmark = pytest.mark.django_db


def _request(client, code: str, data: dict, *, token: str | None = None):
    if token is None:
        token = form_token(client.get(f"/portal/help/{code}/"))
    return client.post(f"/portal/help/{code}/", {**data, "token": token})


def _inquiry(w, **kwargs) -> Case:
    case, _ = case_open(
        account=w.account, process=w.processes["billing-inquiry"],
        subject=kwargs.pop("subject", "A question"), description="Why?", channel="portal", actor=w.customer,
        **kwargs,
    )  # fmt: skip
    return case


# --- the Help Center ----------------------------------------------------------------------------------------


def test_service_levels_in_plain_words():
    assert service_level_text(48) == "within 2 days"
    assert service_level_text(24) == "within 1 day"
    assert service_level_text(120) == "within 5 days"
    assert service_level_text(36) == "within 36 hours"
    assert service_level_text(1) == "within 1 hour"


def test_help_center_lists_the_portal_processes(alice, w):
    hidden = w.processes["suspend_billing"]
    hidden.portal = False
    hidden.save(update_fields=["portal"])
    text = body(alice.get("/portal/help/"))
    for code in ("billing-inquiry", "charge-dispute", "extend-due-date", "other-inquiry"):
        assert f'data-process="{code}"' in text and f'href="/portal/help/{code}/"' in text
    assert 'data-process="suspend-billing"' not in text
    assert "We answer within 2 days" in text and "We answer within 5 days" in text
    assert "More time to pay a statement" in text  # the description
    assert (
        text.index("Billing inquiry") < text.index("Dispute a charge") < text.index("Extend invoice due date")
    )


def test_an_inquiry(alice, w):
    page = alice.get("/portal/help/billing-inquiry/")
    assert page.status_code == 200
    text = body(page)
    assert 'name="subject"' in text and 'name="description"' in text and 'name="statement"' in text
    assert 'name="requested_due_date"' not in text
    response = _request(alice, "billing-inquiry", {"subject": "My bill went up", "description": "Why?",
                                                    "statement": w.statement.pk})  # fmt: skip
    case = Case.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/portal/cases/{case.number}/"
    assert (case.account, case.channel, case.created_by) == (w.account, "portal", w.customer)
    assert (case.subject, case.description, case.statement) == ("My bill went up", "Why?", w.statement)
    confirmation = body(alice.get(response["Location"]))
    assert f"data-tracking-number>{case.number}<" in confirmation and "We e-mailed you" in confirmation


def test_an_inquiry_needs_no_statement_and_refuses_another_customers(alice, w):
    response = _request(alice, "billing-inquiry", {"subject": "Hi", "statement": w.other_statement.pk})
    assert response.status_code == 400
    assert "Choose one of your statements." in body(response)
    assert Case.objects.count() == 0
    _request(alice, "billing-inquiry", {"subject": "Hi"})
    assert Case.objects.get().statement is None


def test_an_inquiry_needs_a_subject(alice, w):
    response = _request(alice, "billing-inquiry", {"subject": "  ", "description": "Kept text"})
    assert response.status_code == 400
    assert "Give your request a short subject." in body(response) and "Kept text" in body(response)
    assert Case.objects.count() == 0


def test_extend_due_date(alice, w):
    paid = Statement.objects.create(
        number="INV-A-PAID", account=w.account, biller=w.statement.biller, external_id="INV-A-PAID",
        statement_date=dt.date(2026, 9, 1), period_start=dt.date(2026, 8, 1), period_end=dt.date(2026, 8, 31),
        due_date=dt.date(2026, 9, 15), currency="USD", status=Statement.Status.PAID, channel="engine",
        content_hash="x", received_at=w.statement.received_at,
    )  # fmt: skip
    text = body(alice.get("/portal/help/extend-due-date/"))
    assert 'name="requested_due_date"' in text and 'type="date"' in text
    assert "INV-A-1" in text and "INV-A-PAID" not in text  # only unpaid statements
    assert "Up to 30 days after the statement’s present due date." in text
    response = _request(alice, "extend-due-date", {"subject": "More time", "statement": w.statement.pk,
                                                    "requested_due_date": "2026-11-30"})  # fmt: skip
    assert response.status_code == 302
    case = Case.objects.get()
    assert (case.statement, case.requested_due_date) == (w.statement, dt.date(2026, 11, 30))
    assert Statement.objects.get(pk=w.statement.pk).due_date == dt.date(2026, 11, 15)  # until approved
    # A paid statement is not a choice.
    response = _request(alice, "extend-due-date", {"subject": "More", "statement": paid.pk,
                                                    "requested_due_date": "2026-10-01"})  # fmt: skip
    assert response.status_code == 400 and "Choose one of your statements." in body(response)


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"requested_due_date": "2026-11-10"}, "requested_due_date", "Must be after the present due date"),
        ({"requested_due_date": "2027-01-30"}, "requested_due_date", "At most 30 days later: 2026-12-15"),
        ({"requested_due_date": ""}, "requested_due_date", "Choose the new due date."),
        ({"requested_due_date": "tomorrow"}, "requested_due_date", "Enter a date"),
        ({"statement": ""}, "statement", "Choose the statement this is about."),
    ],
)
def test_extend_due_date_refusals(alice, w, data, field, message):
    wanted = {"subject": "More time", "statement": w.statement.pk, "requested_due_date": "2026-11-30", **data}
    response = _request(alice, "extend-due-date", wanted)
    assert response.status_code == 400
    text = body(response)
    assert f'data-field-error="{field}"' in text and message in text
    assert 'value="More time"' in text
    assert Case.objects.count() == 0


def test_suspend_billing(alice, w):
    text = body(alice.get("/portal/help/suspend-billing/"))
    assert 'name="statement"' not in text and 'name="requested_due_date"' not in text
    response = _request(alice, "suspend-billing", {"subject": "Moving abroad", "description": "Six months"})
    assert response.status_code == 302
    assert Case.objects.get().process.action == "suspend_billing"


def test_suspend_billing_when_already_suspended_is_a_conflict(alice, w):
    billing_suspend(account=w.account, reason="By phone", actor=w.supervisor)
    response = _request(alice, "suspend-billing", {"subject": "Moving abroad"})
    assert response.status_code == 409
    text = body(response)
    assert f"Billing of account {w.account.number} is already suspended." in text
    assert 'value="Moving abroad"' in text
    assert Case.objects.count() == 0


def test_the_charge_dispute_page_points_to_the_statements(alice, w):
    response = alice.get("/portal/help/charge-dispute/")
    assert response.status_code == 200
    text = body(response)
    assert f'href="/portal/statements/{w.statement.pk}/#charges"' in text
    assert 'href="/portal/help/billing-inquiry/"' in text
    assert alice.post("/portal/help/charge-dispute/", {"subject": "x"}).status_code == 405
    assert Case.objects.count() == 0


def test_a_double_submitted_request_makes_one_case(alice, w):
    token = form_token(alice.get("/portal/help/billing-inquiry/"))
    first = _request(alice, "billing-inquiry", {"subject": "Once"}, token=token)
    second = _request(alice, "billing-inquiry", {"subject": "Once"}, token=token)
    assert first["Location"] == second["Location"] and Case.objects.count() == 1
    assert "We already have this request" in body(alice.get(second["Location"]))


def test_a_token_reused_for_another_process_is_refused(alice, w):
    token = form_token(alice.get("/portal/help/billing-inquiry/"))
    response = _request(alice, "other-inquiry", {"subject": "Other"}, token=token)
    assert response.status_code == 400 and "This form was made for another request" in body(response)
    assert Case.objects.count() == 0


def test_a_card_number_in_a_request_is_refused(alice, w):
    response = _request(alice, "billing-inquiry", {"subject": "Card", "description": "4111111111111111"})
    assert response.status_code == 400
    assert "4111111111111111" not in body(response)
    assert Case.objects.count() == 0


# --- cases --------------------------------------------------------------------------------------------------


def test_cases_list_open_first_then_newest(alice, w):
    closed = _inquiry(w, subject="Old and done")
    case_transition(case=closed, to_status="resolved", actor=w.csr, resolution="Answered")
    older_open = _inquiry(w, subject="Still open")
    newer, _ = dispute_open(statement=w.statement, line=w.line(1), amount="5.00", reason="Wrong",
                            channel="portal", actor=w.customer)  # fmt: skip
    case_transition(case=older_open, to_status="waiting_on_customer", actor=w.csr, comment="Which month?")
    text = body(alice.get("/portal/cases/"))
    assert text.index(newer.number) < text.index(older_open.number) < text.index(closed.number)
    assert "We need your reply" in text
    assert "Status: </span>Resolved" in text and "Status: </span>Waiting on customer" in text
    assert "$5.00" in text  # the disputed amount


def test_cases_list_is_empty_at_first(alice, w):
    assert "No cases yet." in body(alice.get("/portal/cases/"))


def test_case_page_shows_the_public_history_only(alice, w):
    case = _inquiry(w, subject="Price change")
    case_comment(case=case, actor=w.csr, text="Internal: check the price review", public=False)
    case_comment(case=case, actor=w.csr, text="The yearly price review raised plans by $2.00.")
    case_transition(case=case, to_status="resolved", actor=w.csr, resolution="Explained the price review.")
    text = body(alice.get(f"/portal/cases/{case.number}/"))
    assert "Price change" in text and case.number in text
    assert "The yearly price review raised plans by $2.00." in text
    assert "Internal: check the price review" not in text
    assert "Status: Resolved" in text and "Explained the price review." in text
    assert "Casey" not in text  # staff are "Customer service", never by name
    assert "Customer service" in text and "· You ·" in text
    assert "data-reply-form" in text  # a resolved case may still get a reply


def test_case_page_shows_the_dispute_outcome(alice, w):
    case, _ = dispute_open(statement=w.statement, line=w.line(2), amount="25.00", reason="Not abroad",
                           channel="portal", actor=w.customer)  # fmt: skip
    text = body(alice.get(f"/portal/cases/{case.number}/"))
    assert "data-dispute-amount>$25.00<" in text and "Under review" in text
    dispute_resolve(dispute=case.dispute, actor=w.supervisor, approve=True, amount="10.00", note="Partly")
    text = body(alice.get(f"/portal/cases/{case.number}/"))
    assert "Approved in part" in text and "data-dispute-credit>$10.00<" in text
    assert "$10.00 of $25.00 credited to the account." in text


def test_reply_to_a_case(alice, w):
    case = _inquiry(w)
    case_transition(case=case, to_status="waiting_on_customer", actor=w.csr, comment="Which month?")
    response = alice.post(f"/portal/cases/{case.number}/reply/", {"text": "October, please."})
    assert response.status_code == 302 and response["Location"] == f"/portal/cases/{case.number}/#history"
    event = CaseEvent.objects.filter(case=case, kind="comment", actor=w.customer).get()
    assert event.text == "October, please." and event.public
    case.refresh_from_db()
    assert case.status == Case.Status.IN_PROGRESS  # the customer answered
    text = body(alice.get(f"/portal/cases/{case.number}/"))
    assert "October, please." in text and "Your reply" in text


def test_an_empty_reply_is_refused(alice, w):
    case = _inquiry(w)
    events = CaseEvent.objects.count()
    response = alice.post(f"/portal/cases/{case.number}/reply/", {"text": "   "})
    assert response.status_code == 400 and "Write your reply." in body(response)
    assert CaseEvent.objects.count() == events


def test_a_closed_case_takes_no_reply(alice, w):
    case = _inquiry(w)
    case_transition(case=case, to_status="resolved", actor=w.csr, resolution="Done")
    case_transition(case=case, to_status="closed", actor=w.csr)
    text = body(alice.get(f"/portal/cases/{case.number}/"))
    assert "This case is closed" in text and "data-reply-form" not in text
    events = CaseEvent.objects.count()
    response = alice.post(f"/portal/cases/{case.number}/reply/", {"text": "Hello?"})
    assert response.status_code == 409
    assert f"Case {case.number} is closed." in body(response)
    assert CaseEvent.objects.count() == events


def test_reply_is_post_only(alice, w):
    case = _inquiry(w)
    assert alice.get(f"/portal/cases/{case.number}/reply/").status_code == 405
