"""The CSR pages of cases and disputes: the account page's Past due tile and Cases / Disputes sections, the
statement page's Disputes panel with its per-line actions, the new case and dispute forms (one-time tokens),
the case page (status buttons, take it, comments, resolving a dispute) and the supervisors' queue. Who may do
what; refused input changes nothing; a fixed number of queries whatever the data."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group, Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from accounts.models import BillingSuspension
from billing_mgmt import roles
from disputes import views
from disputes.models import Case, CaseEvent, Dispute
from disputes.services import case_comment, case_open, case_transition, dispute_open, dispute_resolve
from payments.models import Adjustment
from statements.models import Statement
from tests.disputes.builders import billed_statement, world
from tests.factories import AccountFactory, UserFactory
from tests.pages import whole_page
from tests.security import pii

pytestmark = pytest.mark.django_db
D = Decimal
S = Case.Status
HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def w():
    return world()


def _as(client, user):
    client.force_login(user)
    return client


def _token(body: str) -> str:
    return re.search(r'<input type="hidden" name="token" value="([^"]+)">', body).group(1)


def _dispute(w, *, line=2, amount="25.00", actor=None, channel="csr") -> Case:
    case, _ = dispute_open(
        statement=w.statement, line=w.line(line) if line else None, amount=amount,
        reason="The customer never roamed.", channel=channel, actor=actor or w.csr,
    )  # fmt: skip
    return case


def _inquiry(w, *, account=None, actor=None, subject="Why is my bill higher?") -> Case:
    case, _ = case_open(
        account=account or w.account, process=w.processes["billing-inquiry"], subject=subject,
        description="It went up by 10.", channel="csr", actor=actor or w.csr,
    )  # fmt: skip
    return case


def _extension(w, wanted: dt.date) -> Case:
    case, _ = case_open(
        account=w.account, process=w.processes["extend_due_date"], subject="More time", channel="csr",
        actor=w.csr, statement=w.statement, requested_due_date=wanted,
    )  # fmt: skip
    return case


def _dispute_url(statement, line=None) -> str:
    url = reverse("dispute-new", args=[statement.pk])
    return f"{url}?line={line.pk}" if line is not None else url


def _post_dispute(client, w, *, line=2, amount="25.00", reason="Never roamed.", token=None):
    target = w.line(line) if line else None
    url = _dispute_url(w.statement, target)
    if token is None:
        token = _token(client.get(url).content.decode())
    return client.post(url, {"amount": amount, "reason": reason, "token": token})


def _post_case(client, w, token=None, **fields):
    url = reverse("case-new", args=[w.account.number])
    if token is None:
        token = _token(client.get(url).content.decode())
    data = {
        "process": w.processes["billing-inquiry"].pk,
        "subject": "Why is my bill higher?",
        "description": "It went up by 10.",
        "token": token,
    } | fields
    return client.post(url, data)


def _case_url(case, name="case-detail") -> str:
    return reverse(name, args=[case.number])


def _body(response) -> str:
    return response.content.decode()


# --- pages render for staff ---------------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["csr", "supervisor"])
def test_the_case_page_shows_header_dispute_actions_and_history(client, w, who):
    case = _dispute(w)
    case_comment(case=case, actor=w.csr, text="Called the roaming partner.", public=False)
    body = _body(_as(client, getattr(w, who)).get(_case_url(case)))
    assert f'<span class="mono">{case.number}</span>' in body
    assert "Dispute a charge" in body and "Alice Example" in body
    assert "data-statement-link>INV-A-1</a>" in body
    assert 'data-case-status><span class="visually-hidden">Status: </span>New</span>' in body
    assert "Line 2 · Roaming · Roaming monthly" in body
    assert "data-dispute-amount>$25.00</div>" in body
    assert "Called the roaming partner." in body and "data-internal" in body
    assert 'data-event="created"' in body
    # Only supervisors decide disputes; both may work the case (but not resolve it while its dispute is open).
    assert ("data-resolve-form" in body) is (who == "supervisor")
    assert 'data-transition="resolved"' not in body and 'data-transition="in_progress"' in body
    assert "The dispute below decides this case" in body
    assert 'data-action="take"' in body


def test_the_queue_lists_open_cases_overdue_first(client, w):
    late = _inquiry(w, subject="Late one")
    soon = _inquiry(w, subject="Soon one")
    Case.objects.filter(pk=late.pk).update(due_at=timezone.now() - dt.timedelta(hours=3))
    Case.objects.filter(pk=soon.pk).update(due_at=timezone.now() + dt.timedelta(hours=1))
    closed = _inquiry(w, subject="Done")
    case_transition(case=closed, to_status=S.RESOLVED, actor=w.csr, resolution="Answered.")
    body = _body(_as(client, w.supervisor).get(reverse("case-queue")))
    assert body.index(late.number) < body.index(soon.number)
    assert closed.number not in body
    assert "· 2 cases" in body
    row = re.search(rf'<tr data-case="{late.number}"[^>]*>', body).group(0)
    assert "row--overdue" in row
    everything = _body(client.get(reverse("case-queue") + "?status=all"))
    assert closed.number in everything and "(filtered)" in everything


def test_queue_filters(client, w):
    inquiry = _inquiry(w)
    disputed = _dispute(w)
    mine = _inquiry(w, subject="Mine")
    case_transition(case=mine, to_status=S.IN_PROGRESS, actor=w.supervisor)  # picks it up: owner
    Case.objects.filter(pk=inquiry.pk).update(due_at=timezone.now() + dt.timedelta(days=10))
    _as(client, w.supervisor)

    def numbers(query: str) -> set[str]:
        body = _body(client.get(reverse("case-queue") + query))
        return set(re.findall(r'<tr data-case="([^"]+)"', body))

    assert numbers("") == {inquiry.number, disputed.number, mine.number}
    assert numbers("?process=charge-dispute") == {disputed.number}
    assert numbers("?queue=Disputes") == {disputed.number}
    assert numbers("?status=in_progress") == {mine.number}
    assert numbers("?mine=on") == {mine.number}
    before = (timezone.localdate() + dt.timedelta(days=6)).isoformat()
    assert numbers(f"?due_before={before}") == {disputed.number, mine.number}
    # A bad filter is said and ignored.
    response = client.get(reverse("case-queue") + "?due_before=soon&status=bogus")
    assert response.status_code == 200
    assert 'data-field-error="due_before">Enter a date. Ignored.' in _body(response)


def test_the_new_case_form_offers_staff_processes_and_the_accounts_statements(client, w):
    body = _body(_as(client, w.csr).get(reverse("case-new", args=[w.account.number])))
    assert "Billing inquiry" in body and "Extend invoice due date" in body and "Suspend billing" in body
    assert ">Dispute a charge</option>" not in body  # raised from a statement line instead
    assert "INV-A-1" in body and "INV-B-1" not in body
    assert 'name="token"' in body


def test_the_dispute_form_defaults_to_the_line_amount(client, w):
    body = _body(_as(client, w.csr).get(_dispute_url(w.statement, w.line(2))))
    assert 'value="25.00"' in body and "Line 2" in body and "Roaming" in body
    assert "At most $25.00, the line’s amount." in body
    whole = _body(client.get(_dispute_url(w.statement)))
    assert "Dispute the whole statement" in whole and 'value="75.00"' in whole


def test_the_account_page_shows_past_due_cases_and_disputes(client, w):
    Statement.objects.filter(pk=w.statement.pk).update(due_date=timezone.localdate() - dt.timedelta(days=5))
    case = _dispute(w)
    other = _inquiry(w)
    # Cases and Disputes are lazy sections: the page as a browser shows it (tests/pages.py).
    body = whole_page(_as(client, w.csr), reverse("account-detail", args=[w.account.number]))
    tile = body[body.index('id="section-past-due"') : body.index('id="section-past-due"') + 1500]
    assert "$50.00" in tile  # $75.00 past due less $25.00 disputed
    assert "$25.00 disputed, held out" in tile
    cases = body[body.index('id="section-cases"') : body.index('id="section-disputes"')]
    assert case.number in cases and other.number in cases and 'data-action="new-case"' in cases
    assert 'hx-trigger="account-changed from:body, case-changed from:body"' in cases
    disputes = body[body.index('id="section-disputes"') :]
    assert f'href="/cases/{case.number}/"' in disputes and "Line 2" in disputes
    # Open cases first: a resolved one goes below.
    case_transition(case=other, to_status=S.RESOLVED, actor=w.csr, resolution="Answered.")
    fragment = _body(client.get(reverse("account-section", args=[w.account.number, "cases"]), **HTMX))
    assert fragment.index(case.number) < fragment.index(other.number)


def test_the_statement_page_has_dispute_links_per_line_and_a_disputes_panel(client, w):
    url = reverse("statement-detail", args=[w.account.number, w.statement.pk])
    body = _body(_as(client, w.csr).get(url))
    assert body.count('data-line-action="dispute"') == 3
    assert f'href="{_dispute_url(w.statement, w.line(2))}"' in body
    assert 'id="panel-disputes-title">Disputes</h2>' in body and "No disputes on this statement." in body
    case = _dispute(w)
    body = _body(client.get(url))
    assert body.count('data-line-action="dispute"') == 2
    assert f'<a class="badge badge--info line-actions__badge" href="/cases/{case.number}/"' in body
    assert "Disputed<span" in body
    panel = body[body.index('id="panel-disputes"') :]
    assert case.number in panel and "$25.00" in panel


def test_a_credit_line_gets_no_dispute_link(client, w):
    statement = billed_statement(w.account, "INV-A-2", [("Plan", "30.00"), ("Goodwill", "-5.00")])
    url = reverse("statement-detail", args=[w.account.number, statement.pk])
    body = _body(_as(client, w.csr).get(url))
    assert body.count('data-line-action="dispute"') == 1


# --- who may ------------------------------------------------------------------------------------------------


def _pages(w, case):
    return [
        reverse("case-detail", args=[case.number]),
        reverse("case-queue"),
        reverse("case-new", args=[w.account.number]),
        _dispute_url(w.statement, w.line(1)),
    ]


def _posts(w, case):
    return [
        reverse("case-status", args=[case.number]),
        reverse("case-assign", args=[case.number]),
        reverse("case-comment", args=[case.number]),
        reverse("dispute-resolve", args=[case.number]),
        reverse("billing-resume", args=[w.account.number]),
        reverse("case-new", args=[w.account.number]),
        _dispute_url(w.statement, w.line(1)),
    ]


def test_anonymous_users_are_sent_to_log_in(client, w):
    case = _dispute(w)
    for url in _pages(w, case) + _posts(w, case):
        response = client.post(url) if url in _posts(w, case) else client.get(url)
        assert response.status_code == 302 and response.url.startswith("/login/?next="), url
    assert Case.objects.count() == 1


def test_customers_get_403_everywhere(client, w):
    case = _dispute(w)
    _as(client, w.customer)
    for url in _pages(w, case):
        assert client.get(url).status_code == 403, url
    for url in _posts(w, case):
        assert client.post(url, {"text": "hi", "to_status": "in_progress"}).status_code == 403, url
    assert CaseEvent.objects.filter(case=case).count() == 1


def test_csrs_may_not_resolve_disputes_or_resume_billing(client, w):
    case = _dispute(w)
    _as(client, w.csr)
    response = client.post(_case_url(case, "dispute-resolve"), {"decision": "approve_full"})
    assert response.status_code == 403
    assert client.post(reverse("billing-resume", args=[w.account.number])).status_code == 403
    assert Dispute.objects.get().status == "open"


def test_staff_without_the_permissions_get_403(client, w):
    case = _dispute(w)
    Group.objects.get(name=roles.CSR).permissions.remove(
        *Permission.objects.filter(
            content_type__app_label="disputes",
            codename__in=["view_case", "add_case", "change_case", "add_dispute"],
        )
    )
    _as(client, UserFactory(username="limited", role=roles.CSR))
    for url in _pages(w, case):
        assert client.get(url).status_code == 403, url
    for url in _posts(w, case):
        assert client.post(url, {"text": "hi"}).status_code == 403, url
    body = _body(client.get(reverse("account-detail", args=[w.account.number])))
    assert 'id="section-cases"' not in body and 'id="section-disputes"' in body  # view_dispute kept


def test_unknown_numbers_and_lines_of_other_statements_are_404(client, w):
    _as(client, w.csr)
    assert client.get(reverse("case-detail", args=["CS-9999999"])).status_code == 404
    assert (
        client.post(reverse("case-status", args=["CS-9999999"]), {"to_status": "closed"}).status_code == 404
    )
    assert client.get(reverse("case-new", args=["NOPE"])).status_code == 404
    assert client.get(reverse("dispute-new", args=[999999])).status_code == 404
    other_line = w.other_statement.lines.get()
    assert client.get(_dispute_url(w.statement, other_line)).status_code == 404
    assert (
        client.post(_dispute_url(w.statement, other_line), {"amount": "1.00", "reason": "x"}).status_code
        == 404
    )
    assert client.get(reverse("dispute-new", args=[w.statement.pk]) + "?line=abc").status_code == 404
    inquiry = _inquiry(w)
    _as(client, w.supervisor)
    assert client.post(_case_url(inquiry, "dispute-resolve"), {"decision": "reject"}).status_code == 404
    assert Case.objects.count() == 1


# --- refused input changes nothing --------------------------------------------------------------------------


def test_a_dispute_above_the_line_amount_is_refused(client, w):
    response = _post_dispute(_as(client, w.csr), w, amount="25.01")
    assert response.status_code == 400
    assert 'data-field-error="amount">At most the line&#x27;s amount ($25.00).' in _body(response)
    assert 'value="25.01"' in _body(response) and "Never roamed." in _body(response)  # nothing lost
    assert not Case.objects.exists() and not Dispute.objects.exists()
    assert Statement.objects.get(pk=w.statement.pk).disputed_amount == 0


def test_a_second_open_dispute_on_a_line_is_refused(client, w):
    first = _dispute(w)
    _as(client, w.csr)
    page = _body(client.get(_dispute_url(w.statement, w.line(2))))
    assert "data-already-disputed" in page and first.number in page and "data-dispute-form" not in page
    token = views.token_issue(w.csr.pk, f"dispute:{w.statement.pk}:{w.line(2).pk}")
    response = _post_dispute(client, w, token=token)
    assert response.status_code == 400
    assert "This line already has an open dispute." in _body(response)
    assert Case.objects.count() == 1 and Dispute.objects.count() == 1


@pytest.mark.parametrize(
    ("amount", "reason", "field", "message"),
    [
        ("25.00", "", "reason", "Say why the charge is disputed."),
        ("", "Wrong", "amount", "Enter the amount the customer disputes."),
        ("0", "Wrong", "amount", "The amount must be more than zero."),
        ("1.234", "Wrong", "amount", "USD amounts have at most 2 decimal places."),
        ("4111 1111 1111 1111", "Wrong", "amount", None),
    ],
)
def test_bad_dispute_input_is_refused_with_the_message(client, w, amount, reason, field, message):
    response = _post_dispute(_as(client, w.csr), w, amount=amount, reason=reason)
    assert response.status_code == 400
    body = _body(response)
    assert f'data-field-error="{field}">' in body
    if message:
        assert message in body
    assert not pii.echoes_test_card(body)
    assert not Case.objects.exists()


def test_a_refused_transition_is_a_409_and_changes_nothing(client, w):
    case = _inquiry(w)
    _as(client, w.csr)
    response = client.post(_case_url(case, "case-status"), {"to_status": "closed", "expected_status": "new"})
    assert response.status_code == 409
    assert "A new case cannot become closed." in _body(response)
    assert Case.objects.get().status == "new" and case.events.count() == 1


def test_a_stale_status_button_is_a_409_with_a_clear_message(client, w):
    case = _inquiry(w)
    case_transition(case=case, to_status=S.IN_PROGRESS, actor=w.supervisor)
    response = _as(client, w.csr).post(
        _case_url(case, "case-status"),
        {"to_status": "in_progress", "expected_status": "new", "text": "On it"},
    )
    assert response.status_code == 409
    body = _body(response)
    assert f"Case {case.number} is now in progress (changed since you looked)." in body
    assert "On it" in body  # what was typed is kept
    assert case.events.filter(kind="comment").count() == 0


def test_rejecting_a_request_needs_a_reason(client, w):
    case = _inquiry(w)
    response = _as(client, w.csr).post(_case_url(case, "case-status"), {"to_status": "rejected"})
    assert response.status_code == 400
    assert 'data-field-error="text">Required.' in _body(response)
    assert Case.objects.get().status == "new"


def test_a_csr_cannot_approve_an_extension(client, w):
    wanted = dt.date(2026, 12, 10)
    case = _extension(w, wanted)
    _as(client, w.csr)
    page = _body(client.get(_case_url(case)))
    assert 'data-transition="resolved"' not in page
    assert "A supervisor approves (resolves) or rejects this request." in page
    response = client.post(
        _case_url(case, "case-status"), {"to_status": "resolved", "expected_status": "new"}
    )
    assert response.status_code == 400
    assert "Only a supervisor approves or rejects a request to extend invoice due date." in _body(response)
    assert Statement.objects.get(pk=w.statement.pk).due_date == dt.date(2026, 11, 15)


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"decision": "reject"}, "note", "Required."),
        ({"decision": "approve_part"}, "amount", "Enter the amount to credit."),
        ({"decision": "approve_part", "amount": "30.00"}, "amount", "At most the disputed $25.00."),
        ({}, "decision", "Choose a decision."),
    ],
)
def test_bad_resolutions_are_refused(client, w, data, field, message):
    case = _dispute(w)
    response = _as(client, w.supervisor).post(_case_url(case, "dispute-resolve"), data)
    assert response.status_code == 400
    assert f'data-field-error="{field}">{message}' in _body(response)
    assert Dispute.objects.get().status == "open" and not Adjustment.objects.exists()


def test_the_raiser_of_a_dispute_cannot_resolve_it(client, w):
    case = _dispute(w, actor=w.supervisor)
    response = _as(client, w.supervisor).post(
        _case_url(case, "dispute-resolve"), {"decision": "approve_full"}
    )
    assert response.status_code == 400
    assert "You cannot resolve a dispute you raised." in _body(response)
    assert Dispute.objects.get().status == "open"


def test_a_decided_dispute_is_a_409(client, w):
    case = _dispute(w)
    dispute_resolve(dispute=Dispute.objects.get(), actor=w.supervisor, approve=False, note="Roamed in May.")
    response = _as(client, w.supervisor).post(
        _case_url(case, "dispute-resolve"), {"decision": "approve_full"}
    )
    assert response.status_code == 409
    assert "This dispute is already rejected." in _body(response)
    assert not Adjustment.objects.exists()


def test_bad_new_case_input_keeps_what_was_typed(client, w):
    response = _post_case(_as(client, w.csr), w, subject="", description="Typed carefully.")
    assert response.status_code == 400
    body = _body(response)
    assert 'data-field-error="subject">Write a subject.' in body and "Typed carefully." in body
    response = _post_case(client, w, process=w.processes["extend_due_date"].pk, subject="More time")
    assert response.status_code == 400
    assert 'data-field-error="statement">Choose the statement this is about.' in _body(response)
    response = _post_case(
        client, w, process=w.processes["extend_due_date"].pk, statement=w.statement.pk,
        requested_due_date="2027-02-01",
    )  # fmt: skip
    assert response.status_code == 400
    assert 'data-field-error="requested_due_date">At most 30 days later: 2026-12-15 or earlier.' in _body(
        response
    )
    response = _post_case(client, w, process=w.processes["charge_dispute"].pk)
    assert 'data-field-error="process">Choose one of the request types listed.' in _body(response)
    assert not Case.objects.exists()


def test_a_forged_token_is_refused(client, w):
    response = _post_case(_as(client, w.csr), w, token="forged")
    assert response.status_code == 400
    assert "This form has expired." in _body(response)
    other = views.token_issue(w.csr.pk, f"case:{w.other_account.number}")
    assert _post_case(client, w, token=other).status_code == 400
    assert not Case.objects.exists()


def test_an_empty_comment_is_refused(client, w):
    case = _inquiry(w)
    response = _as(client, w.csr).post(_case_url(case, "case-comment"), {"text": "  "})
    assert response.status_code == 400
    assert 'data-field-error="text">Write the comment.' in _body(response)
    assert case.events.count() == 1


def test_a_closed_case_takes_no_comment(client, w):
    case = _inquiry(w)
    case_transition(case=case, to_status=S.RESOLVED, actor=w.csr, resolution="Answered.")
    case_transition(case=Case.objects.get(pk=case.pk), to_status=S.CLOSED, actor=w.csr)
    _as(client, w.csr)
    assert "data-comment-form" not in _body(client.get(_case_url(case)))
    response = client.post(_case_url(case, "case-comment"), {"text": "Late note"})
    assert response.status_code == 409 and f"Case {case.number} is closed." in _body(response)
    assert client.post(_case_url(case, "case-assign")).status_code == 409


# --- what works ---------------------------------------------------------------------------------------------


def test_a_csr_disputes_a_line_once_per_token(client, w):
    _as(client, w.csr)
    token = _token(_body(client.get(_dispute_url(w.statement, w.line(2)))))
    response = _post_dispute(client, w, amount="20.00", token=token)
    case = Case.objects.get()
    assert response.status_code == 302 and response.url == f"/cases/{case.number}/"
    dispute = Dispute.objects.get()
    assert (dispute.amount, dispute.statement_line, dispute.raised_by, case.channel) == (
        D("20.00"), w.line(2), w.csr, "csr"
    )  # fmt: skip
    assert Statement.objects.get(pk=w.statement.pk).disputed_amount == D("20.00")
    page = _body(client.get(response.url))
    assert f"Dispute of $20.00 opened as case {case.number}." in page
    again = _post_dispute(client, w, amount="20.00", token=token)  # a double submit
    assert again.status_code == 302 and again.url == response.url
    assert Case.objects.count() == 1
    assert "This form was already used" in _body(client.get(again.url))


def test_a_whole_statement_dispute(client, w):
    response = _post_dispute(_as(client, w.csr), w, line=None, amount="75.00")
    assert response.status_code == 302
    dispute = Dispute.objects.get()
    assert dispute.statement_line is None and dispute.amount == D("75.00")
    assert "Whole statement" in _body(client.get(response.url))


def test_a_csr_opens_a_case_once_per_token(client, w):
    _as(client, w.csr)
    token = _token(_body(client.get(reverse("case-new", args=[w.account.number]))))
    response = _post_case(client, w, token=token, statement=w.statement.pk)
    case = Case.objects.get()
    assert response.url == f"/cases/{case.number}/"
    assert (case.channel, case.created_by, case.statement, case.process.code) == (
        "csr", w.csr, w.statement, "billing-inquiry"
    )  # fmt: skip
    assert f"Case {case.number} was opened." in _body(client.get(response.url))
    assert _post_case(client, w, token=token).url == response.url
    assert Case.objects.count() == 1


def test_a_supervisor_approves_part_of_a_dispute(client, w):
    case = _dispute(w)
    response = _as(client, w.supervisor).post(
        _case_url(case, "dispute-resolve"),
        {"decision": "approve_part", "amount": "15.00", "note": "Half roamed."},
    )
    assert response.status_code == 302 and response["HX-Trigger"] == "case-changed"
    dispute = Dispute.objects.get()
    assert (dispute.status, dispute.approved_amount, dispute.resolved_by) == (
        "partially_approved", D("15.00"), w.supervisor
    )  # fmt: skip
    assert dispute.adjustment.amount == D("15.00")
    assert Case.objects.get().status == "resolved"
    assert Statement.objects.get(pk=w.statement.pk).disputed_amount == 0
    page = _body(client.get(response.url))
    assert "Approved in part: $15.00 credited to the account." in page
    assert "data-dispute-credited>$15.00</div>" in page and "data-resolve-form" not in page


def test_a_supervisor_approves_in_full_or_rejects(client, w):
    case = _dispute(w)
    _as(client, w.supervisor).post(_case_url(case, "dispute-resolve"), {"decision": "approve_full"})
    assert Dispute.objects.get().approved_amount == D("25.00")
    other = _dispute(w, line=1, amount="10.00")
    client.post(_case_url(other, "dispute-resolve"), {"decision": "reject", "note": "Used as billed."})
    rejected = Dispute.objects.get(case=other)
    assert rejected.status == "rejected" and rejected.resolution_note == "Used as billed."
    assert Case.objects.get(pk=other.pk).status == "rejected"


def test_status_changes_take_it_and_comments(client, w):
    case = _inquiry(w)
    _as(client, w.csr)
    assert client.post(_case_url(case, "case-assign")).status_code == 302
    assert Case.objects.get().owner == w.csr
    page = _body(client.get(_case_url(case)))
    assert 'data-action="take"' not in page and "is yours now" in page
    response = client.post(
        _case_url(case, "case-status"),
        {"to_status": "waiting_on_customer", "expected_status": "new", "text": "Asked for the meter photo."},
    )
    assert response.status_code == 302
    assert Case.objects.get().status == "waiting_on_customer"
    client.post(_case_url(case, "case-comment"), {"text": "Customer is abroad", "internal": "on"})
    note = case.events.get(kind="comment", text="Customer is abroad")
    assert note.public is False and note.actor == w.csr
    client.post(
        _case_url(case, "case-status"),
        {"to_status": "resolved", "expected_status": "waiting_on_customer", "text": "Meter misread; fixed."},
    )
    case.refresh_from_db()
    assert case.status == "resolved" and case.resolution == "Meter misread; fixed."
    page = _body(client.get(_case_url(case)))
    assert "Meter misread; fixed." in page and "Asked for the meter photo." in page
    assert 'data-transition="in_progress">Reopen' in page and 'data-transition="closed"' in page
    assert page.count("data-event=") == case.events.count()


def test_a_supervisor_approves_an_extension_with_the_resolved_button(client, w):
    wanted = dt.date(2026, 12, 10)
    case = _extension(w, wanted)
    _as(client, w.supervisor)
    page = _body(client.get(_case_url(case)))
    assert "moves from Nov 15, 2026 to Dec 10, 2026" in page and 'data-transition="resolved"' in page
    client.post(_case_url(case, "case-status"), {"to_status": "resolved", "expected_status": "new"})
    assert Statement.objects.get(pk=w.statement.pk).due_date == wanted
    assert Case.objects.get().status == "resolved"


def test_a_suspension_shows_on_the_account_page_and_a_supervisor_resumes_it(client, w):
    case, _ = case_open(account=w.account, process=w.processes["suspend_billing"], subject="Moving abroad",
                        channel="csr", actor=w.csr)  # fmt: skip
    case_transition(case=case, to_status=S.RESOLVED, actor=w.supervisor, resolution="Until March.")
    account_url = reverse("account-detail", args=[w.account.number])
    csr_page = _body(_as(client, w.csr).get(account_url))
    assert "data-billing-suspended" in csr_page and f'href="/cases/{case.number}/"' in csr_page
    assert 'data-action="resume-billing"' not in csr_page
    page = _body(_as(client, w.supervisor).get(account_url))
    tile = page[page.index("data-billing-suspended") :]
    assert "Billing suspended" in tile and f'(case <a class="mono" href="/cases/{case.number}/">' in tile
    assert 'data-action="resume-billing"' in tile
    response = client.post(reverse("billing-resume", args=[w.account.number]), {"note": "Back home."}, **HTMX)
    assert response.status_code == 204 and response["HX-Trigger"] == "case-changed"
    assert not BillingSuspension.objects.filter(ended_at__isnull=True).exists()
    fragment = _body(client.get(reverse("account-section", args=[w.account.number, "past-due"]), **HTMX))
    assert "is resumed" in fragment and "data-billing-suspended" not in fragment
    # Resuming again: a clear message in place (htmx swaps only 2xx), 409 without htmx.
    again = client.post(reverse("billing-resume", args=[w.account.number]), **HTMX)
    assert again.status_code == 200 and "is not suspended" in _body(again)
    plain = client.post(reverse("billing-resume", args=[w.account.number]))
    assert plain.status_code == 409 and "is not suspended" in _body(plain)


def test_a_suspended_non_paying_childs_tile_names_the_paying_parent(client, w):
    child = AccountFactory(name="Alice Junior", parent=w.account, is_paying=False)
    case, _ = case_open(account=child, process=w.processes["suspend_billing"], subject="Away",
                        channel="csr", actor=w.csr)  # fmt: skip
    case_transition(case=case, to_status=S.RESOLVED, actor=w.supervisor, resolution="Away.")
    page = _body(_as(client, w.csr).get(reverse("account-detail", args=[child.number])))
    assert "Billing of paying parent" in page and w.account.name in page


# --- queries do not grow with data --------------------------------------------------------------------------


def _count(client, url: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(url).status_code == 200
    return len(queries.captured_queries)


def test_account_sections_use_a_fixed_number_of_queries(client, w, django_assert_max_num_queries):
    _as(client, w.supervisor)
    _dispute(w)
    _inquiry(w)
    sections = {
        key: _count(client, reverse("account-section", args=[w.account.number, key]))
        for key in ("past-due", "cases", "disputes")
    }
    client.get(reverse("account-detail", args=[w.account.number]))  # the first view writes the session
    page = _count(client, reverse("account-detail", args=[w.account.number]))
    for i in range(12):
        _inquiry(w, subject=f"Question {i}")
    _dispute(w, line=1, amount="5.00")
    _dispute(w, line=3, amount="5.00")
    for key, before in sections.items():
        assert _count(client, reverse("account-section", args=[w.account.number, key])) == before, key
    assert _count(client, reverse("account-detail", args=[w.account.number])) == page
    # The section views themselves: at most three for the tile (past due, the balance that caps it,
    # suspension), one for each list.
    from django.test import RequestFactory

    from disputes.views import cases_section, disputes_section, past_due_section

    request = RequestFactory().get("/")
    request.user = w.supervisor
    request.session = {}
    w.supervisor.has_perm("disputes.view_case")  # the permission cache, as the page has it
    account = type(w.account).objects.select_related("billing_profile", "parent").get(pk=w.account.pk)
    for view, most in ((past_due_section, 3), (cases_section, 1), (disputes_section, 1)):
        with django_assert_max_num_queries(most):
            view(request, account)


def test_the_case_page_uses_a_fixed_number_of_queries(client, w):
    case = _dispute(w)
    _as(client, w.supervisor)
    before = _count(client, _case_url(case))
    for i in range(15):
        case_comment(case=case, actor=w.csr, text=f"Note {i}", public=bool(i % 2))
    assert _count(client, _case_url(case)) == before
    assert before <= 14


def test_the_queue_uses_a_fixed_number_of_queries(client, w):
    _inquiry(w)
    _as(client, w.supervisor)
    before = _count(client, reverse("case-queue"))
    for i in range(15):
        case = _inquiry(w, account=w.other_account if i % 2 else w.account, subject=f"Q{i}")
        if i % 3 == 0:
            case_transition(case=case, to_status=S.IN_PROGRESS, actor=w.supervisor)
    assert _count(client, reverse("case-queue")) == before <= 10


def test_the_statement_panel_uses_one_query(client, w):
    url = reverse("statement-detail", args=[w.account.number, w.statement.pk])
    _as(client, w.csr)
    before = _count(client, url)
    _dispute(w)
    _dispute(w, line=1, amount="3.00", channel="portal")
    assert _count(client, url) == before
