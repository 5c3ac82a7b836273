"""The customer's home page, statements, statement page, invoice downloads and disputing a charge."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.core import mail

from accounts.models import Contact
from disputes.models import Case, Dispute
from disputes.services import dispute_open
from invoicing.models import Invoice
from invoicing.services import invoices_issue, invoices_render
from statements.models import Statement, StatementLine
from tests.disputes.builders import billed_statement
from tests.factories import AccountFactory, ContactFactory

from .conftest import body, form_token

pytestmark = pytest.mark.django_db

D = Decimal


def _dispute_url(w, line=None, statement=None) -> str:
    statement = statement or w.statement
    return f"/portal/statements/{statement.pk}/dispute/?line={(line or w.line(1)).pk}"


def _post_dispute(client, w, *, line=None, amount="25.00", reason="I was not abroad.", statement=None,
                  token=None):  # fmt: skip
    statement = statement or w.statement
    line = line or w.line(2)
    if token is None:
        token = form_token(client.get(_dispute_url(w, w.line(1), statement)))
    return client.post(
        f"/portal/statements/{statement.pk}/dispute/",
        {"line": line.pk, "amount": amount, "reason": reason, "token": token},
    )


def _nothing_disputed(w) -> None:
    assert Case.objects.count() == 0
    assert Dispute.objects.count() == 0
    assert Statement.objects.get(pk=w.statement.pk).disputed_amount == 0


# --- home ---------------------------------------------------------------------------------------------------


def test_home_summarises_the_account(alice, w, settings):
    dispute_open(statement=w.statement, line=w.line(2), amount="25.00", reason="Wrong", channel="portal",
                 actor=w.customer)  # fmt: skip
    with_today = dt.date(2026, 11, 20)  # the statement (75.00, due Nov 15) is past due by then
    from unittest import mock

    with mock.patch("django.utils.timezone.localdate", return_value=with_today):
        text = body(alice.get("/portal/"))
    assert "Hello, Alice" in text
    assert "data-balance>$75.00<" in text
    assert "data-past-due>$50.00<" in text  # the 25.00 in dispute is held out of past due
    assert "data-disputed>$25.00<" in text
    assert "data-next-due>Nov 15, 2026<" in text
    assert f'href="/portal/statements/{w.statement.pk}/"' in text
    assert "data-open-cases>1 open<" in text
    assert 'href="/portal/help/billing-inquiry/"' in text and 'href="/portal/help/"' in text


def test_home_when_nothing_is_owed(alice, w):
    Statement.objects.filter(pk=w.statement.pk).update(status=Statement.Status.PAID)
    text = body(alice.get("/portal/"))
    assert "data-past-due>$0.00<" in text
    assert "data-next-due>Nothing due<" in text
    assert "data-open-cases>0 open<" in text


def test_a_customer_with_several_accounts_switches_between_them(alice, w):
    second = AccountFactory(name="Alice's Holiday Home")
    ContactFactory(account=second, name="Alice", email="alice@example.com", role=Contact.Role.PORTAL_USER,
                   user=w.customer)  # fmt: skip
    billed_statement(second, "INV-H-1", [("Broadband", "30.00")])
    home = body(alice.get("/portal/"))
    assert 'id="switch-account"' in home
    assert w.account.number in home and second.number in home
    assert w.other_account.number not in home
    # The first account (by name) is the current one; the lists are about it.
    assert "INV-A-1" in body(alice.get("/portal/statements/")) and "INV-H-1" not in body(
        alice.get("/portal/statements/")
    )
    response = alice.post("/portal/account/", {"account": second.number, "next": "/portal/statements/"})
    assert response.status_code == 302 and response["Location"] == "/portal/statements/"
    listing = body(alice.get("/portal/statements/"))
    assert "INV-H-1" in listing and "INV-A-1" not in listing
    # Detail pages open for any of the customer's accounts.
    assert alice.get(f"/portal/statements/{w.statement.pk}/").status_code == 200
    # A foreign "next" is not followed.
    response = alice.post("/portal/account/", {"account": w.account.number, "next": "https://evil.example/"})
    assert response["Location"] == "/portal/"


def test_one_account_has_no_switcher(alice, w):
    assert 'id="switch-account"' not in body(alice.get("/portal/"))


# --- statements ---------------------------------------------------------------------------------------------


def test_statements_list_newest_first_and_paged(alice, w):
    for i in range(11):
        statement = billed_statement(w.account, f"INV-A-OLD-{i:02d}", [("Mobile plan", "40.00")])
        Statement.objects.filter(pk=statement.pk).update(
            statement_date=dt.date(2025, 1, 1) + dt.timedelta(days=i), due_date=dt.date(2025, 2, 1)
        )
    first = body(alice.get("/portal/statements/"))
    assert first.index("INV-A-1<") < first.index("INV-A-OLD-10") < first.index("INV-A-OLD-02")
    assert "INV-A-OLD-01" not in first and "Page 1 of 2" in first
    second = body(alice.get("/portal/statements/?page=2"))
    assert "INV-A-OLD-01" in second and "INV-A-OLD-00" in second and "INV-A-1<" not in second
    assert alice.get("/portal/statements/?page=zzz").status_code == 200


def test_statement_page_shows_amounts_lines_and_dispute_actions(alice, w):
    StatementLine.objects.create(
        statement=w.statement, position=4, line_type=StatementLine.Type.DISCOUNT, product="Loyalty discount",
        amount=D("-5.00"),
    )  # fmt: skip
    case, _ = dispute_open(statement=w.statement, line=w.line(2), amount="20.00", reason="Wrong",
                           channel="portal", actor=w.customer)  # fmt: skip
    text = body(alice.get(f"/portal/statements/{w.statement.pk}/"))
    assert "data-total-due>$75.00<" in text
    for label in ("Previous balance", "Payments received", "New charges", "Taxes"):
        assert label in text
    assert "Mobile plan" in text and "Roaming" in text and "Device" in text and "Loyalty discount" in text
    # Lines 1 and 3 can be disputed; line 2 has an open dispute (linked to its case); the credit cannot.
    assert text.count("data-dispute-link") == 2
    assert f"/dispute/?line={w.line(1).pk}" in text and f"/dispute/?line={w.line(3).pk}" in text
    assert f"/dispute/?line={w.line(2).pk}" not in text and f"/dispute/?line={w.line(4).pk}" not in text
    assert f'href="/portal/cases/{case.number}/" data-disputed' in text
    assert "$20.00 of this statement is in dispute" in text


def test_statement_page_links_the_rendered_invoice(alice, w):
    assert "data-no-invoice" in body(alice.get(f"/portal/statements/{w.statement.pk}/"))
    invoices_render(statement_ids=[w.statement.pk], actor="test")
    number = Invoice.objects.get(statement=w.statement).number
    text = body(alice.get(f"/portal/statements/{w.statement.pk}/"))
    assert (
        f'href="/portal/invoices/{number}.pdf"' in text and f'href="/portal/invoices/{number}.html"' in text
    )
    assert f'href="/portal/invoices/{number}.pdf"' in body(alice.get("/portal/statements/"))


def test_invoice_downloads_serve_the_stored_files(alice, w):
    invoices_render(statement_ids=[w.statement.pk], actor="test")
    invoice = Invoice.objects.get(statement=w.statement)
    pdf = alice.get(f"/portal/invoices/{invoice.number}.pdf")
    assert pdf.status_code == 200 and pdf["Content-Type"] == "application/pdf"
    assert pdf["Content-Disposition"] == f'attachment; filename="{invoice.number}.pdf"'
    content = b"".join(pdf.streaming_content)
    with invoice.pdf.open("rb") as stored:
        assert content == stored.read()
    assert alice.get(f"/portal/invoices/{invoice.number}.pdf?inline=1")["Content-Disposition"].startswith(
        "inline"
    )
    html = alice.get(f"/portal/invoices/{invoice.number}.html")
    assert html["Content-Type"] == "text/html; charset=utf-8"
    csp = html["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "sandbox" in csp and "script-src" not in csp
    assert html["X-Content-Type-Options"] == "nosniff" and html["Cache-Control"] == "private, no-store"
    assert alice.post(f"/portal/invoices/{invoice.number}.pdf").status_code == 405


def test_an_invoice_not_rendered_yet_has_no_link_and_no_file(alice, w):
    [issued] = invoices_issue(statement_ids=[w.statement.pk])
    assert issued.status == Invoice.Status.ISSUED
    assert f"/portal/invoices/{issued.number}" not in body(alice.get(f"/portal/statements/{w.statement.pk}/"))
    assert alice.get(f"/portal/invoices/{issued.number}.pdf").status_code == 404


def test_an_invoice_file_missing_from_storage_is_not_found(alice, w):
    invoices_render(statement_ids=[w.statement.pk], actor="test")
    invoice = Invoice.objects.get(statement=w.statement)
    invoice.pdf.storage.delete(invoice.pdf.name)
    assert alice.get(f"/portal/invoices/{invoice.number}.pdf").status_code == 404


# --- disputing a charge -------------------------------------------------------------------------------------


def test_dispute_form_defaults_to_the_whole_line(alice, w):
    response = alice.get(_dispute_url(w, w.line(2)))
    assert response.status_code == 200
    text = body(response)
    assert 'name="amount"' in text and 'value="25.00"' in text
    assert "Roaming" in text and 'name="token"' in text and "csrfmiddlewaretoken" in text


def test_dispute_happy_path(alice, w, eager, django_capture_on_commit_callbacks):
    token = form_token(alice.get(_dispute_url(w, w.line(2))))
    with django_capture_on_commit_callbacks(execute=True):
        response = _post_dispute(alice, w, amount="20.00", token=token)
    case = Case.objects.select_related("dispute").get()
    assert response.status_code == 302 and response["Location"] == f"/portal/cases/{case.number}/"
    assert case.channel == Case.Channel.PORTAL and case.created_by == w.customer
    assert case.process.action == "charge_dispute" and case.statement == w.statement
    assert case.subject == "Disputed charge: Roaming (INV-A-1)"
    dispute = case.dispute
    assert (dispute.statement_line, dispute.amount, dispute.reason) == (
        w.line(2),
        D("20.00"),
        "I was not abroad.",
    )
    assert dispute.raised_by == w.customer
    assert Statement.objects.get(pk=w.statement.pk).disputed_amount == D("20.00")
    assert [m.to for m in mail.outbox] == [["alice@example.com"]]
    page = body(alice.get(response["Location"]))
    assert "Thank you, we’ve got your request" in page
    assert f"data-tracking-number>{case.number}<" in page
    assert "We e-mailed you a confirmation at <strong>alice@example.com</strong>" in page
    # The confirmation is shown once.
    assert "data-confirmation" not in body(alice.get(response["Location"]))
    # The statement now says "Disputed" on that line.
    assert f'href="/portal/cases/{case.number}/" data-disputed' in body(
        alice.get(f"/portal/statements/{w.statement.pk}/")
    )


def test_a_double_submit_makes_one_dispute(alice, w):
    token = form_token(alice.get(_dispute_url(w, w.line(2))))
    first = _post_dispute(alice, w, token=token)
    second = _post_dispute(alice, w, token=token)
    assert first["Location"] == second["Location"]
    assert Case.objects.count() == 1 and Dispute.objects.count() == 1
    assert "We already have this request" in body(alice.get(second["Location"]))


def test_dispute_above_the_line_amount_is_refused(alice, w):
    response = _post_dispute(alice, w, amount="25.01", reason="Too much")
    assert response.status_code == 400
    text = body(response)
    assert 'data-field-error="amount"' in text and "At most the line&#x27;s amount ($25.00)." in text
    assert 'value="25.01"' in text and "Too much" in text  # what was typed is kept
    _nothing_disputed(w)


@pytest.mark.parametrize(
    ("amount", "message"),
    [
        ("", "Enter the amount you dispute."),
        ("abc", "Enter the amount as a number"),
        ("-5", "The amount must be more than zero."),
        ("0", "The amount must be more than zero."),
        ("10.001", "USD amounts have at most 2 decimal places."),
    ],
)
def test_dispute_amounts_that_are_not_amounts(alice, w, amount, message):
    response = _post_dispute(alice, w, amount=amount)
    assert response.status_code == 400
    assert message in body(response)
    _nothing_disputed(w)


def test_dispute_needs_a_reason(alice, w):
    response = _post_dispute(alice, w, reason="   ")
    assert response.status_code == 400
    assert "Tell us what is wrong with the charge." in body(response)
    _nothing_disputed(w)


def test_a_second_open_dispute_on_a_line_is_refused(alice, w):
    dispute_open(statement=w.statement, line=w.line(2), amount="5.00", reason="First", channel="portal",
                 actor=w.customer)  # fmt: skip
    # The page says so instead of offering the form...
    page = body(alice.get(_dispute_url(w, w.line(2))))
    assert "data-already-disputed" in page and 'name="amount"' not in page
    # ...and a post (an old tab) is refused with nothing changed.
    response = _post_dispute(alice, w, line=w.line(2), amount="10.00", reason="Second")
    assert response.status_code == 400
    assert "This line already has an open dispute." in body(response)
    assert Case.objects.count() == 1 and Dispute.objects.count() == 1
    assert Statement.objects.get(pk=w.statement.pk).disputed_amount == D("5.00")


def test_a_line_of_another_statement_is_refused(alice, w):
    mine_too = billed_statement(w.account, "INV-A-2", [("Mobile plan", "40.00")])
    other_line = w.line(1, mine_too)
    # The form is not offered for it under this statement...
    assert alice.get(_dispute_url(w, other_line)).status_code == 404
    # ...and a post mixing them is refused by the rules, nothing changed.
    response = _post_dispute(alice, w, line=other_line, amount="10.00")
    assert response.status_code == 400
    assert "The line is not on that statement." in body(response)
    _nothing_disputed(w)
    assert Statement.objects.get(pk=mine_too.pk).disputed_amount == 0


def test_a_credit_line_cannot_be_disputed(alice, w):
    credit = StatementLine.objects.create(
        statement=w.statement, position=4, line_type=StatementLine.Type.DISCOUNT, product="Discount",
        amount=D("-5.00"),
    )  # fmt: skip
    page = body(alice.get(_dispute_url(w, credit)))
    assert "data-not-disputable" in page and 'name="amount"' not in page
    response = _post_dispute(alice, w, line=credit, amount="5.00")
    assert response.status_code == 400
    assert "Only a charge can be disputed" in body(response)
    _nothing_disputed(w)


def test_a_forged_token_is_refused(alice, w):
    response = _post_dispute(alice, w, token="forged")
    assert response.status_code == 400
    text = body(response)
    assert "This form has expired" in text
    assert form_token(response) != "forged"  # a fresh one to send again
    _nothing_disputed(w)


def test_a_token_of_another_form_is_refused(alice, w):
    token = form_token(alice.get("/portal/help/billing-inquiry/"))
    response = _post_dispute(alice, w, token=token)
    assert response.status_code == 400
    assert "This form was made for another request" in body(response)
    _nothing_disputed(w)


def test_a_card_number_in_the_reason_is_refused_and_not_shown_back(alice, w):
    response = _post_dispute(alice, w, reason="Refund to 4111 1111 1111 1111 please")
    assert response.status_code == 400
    assert "4111 1111 1111 1111" not in body(response)
    _nothing_disputed(w)


def test_dispute_get_only_and_post(alice, w):
    assert alice.put(f"/portal/statements/{w.statement.pk}/dispute/").status_code == 405
