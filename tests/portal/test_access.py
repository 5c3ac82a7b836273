"""Who may use the portal, and what a customer can reach: anonymous visitors log in at /portal/login/, staff
and users without the Customer role get a polite 403, and every URL with another customer's id or number in
it is 404 (never 403), for pages, files and forms alike, with nothing changed."""

from __future__ import annotations

import pytest
from django.urls import reverse

from billing_mgmt import roles
from disputes.models import Case, CaseEvent, Dispute
from disputes.services import case_open, dispute_open
from invoicing.models import Invoice
from invoicing.services import invoices_render
from statements.models import Statement
from tests.factories import UserFactory

from .conftest import body, form_token

pytestmark = pytest.mark.django_db


def _pages(w) -> list[str]:
    line = w.line(1)
    return [
        "/portal/",
        "/portal/statements/",
        f"/portal/statements/{w.statement.pk}/",
        f"/portal/statements/{w.statement.pk}/dispute/?line={line.pk}",
        "/portal/help/",
        "/portal/help/billing-inquiry/",
        "/portal/cases/",
    ]


# --- anonymous, staff, other users --------------------------------------------------------------------------


def test_anonymous_visitors_are_sent_to_the_portal_login(client, w):
    for url in _pages(w):
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"] == f"/portal/login/?next={url.replace('?', '%3F').replace('=', '%3D')}"


def test_anonymous_posts_change_nothing(client, w):
    response = client.post(
        f"/portal/statements/{w.statement.pk}/dispute/", {"line": w.line(1).pk, "amount": "1", "reason": "x"}
    )
    assert response.status_code == 302 and response["Location"].startswith("/portal/login/")
    assert Case.objects.count() == 0


@pytest.mark.parametrize("role", [roles.CSR, roles.SUPERVISOR, roles.BILLING_ADMIN])
def test_staff_get_a_polite_403_that_points_to_the_csr_app(client, w, role):
    client.force_login(UserFactory(username=f"staff-{role}".replace(" ", "-"), role=role))
    for url in _pages(w):
        response = client.get(url)
        assert response.status_code == 403, url
        text = body(response)
        assert "This portal is for customers" in text
        assert f'href="{reverse("csr-home")}"' in text
    assert client.get("/portal/invoices/INV-00000001.pdf").status_code == 403


def test_superusers_are_staff_here(client, w):
    user = UserFactory(username="root")
    user.is_superuser = user.is_staff = True
    user.save()
    client.force_login(user)
    assert client.get("/portal/").status_code == 403


def test_a_user_without_the_customer_role_gets_403_even_with_a_contact(client, w):
    user = UserFactory(username="nobody")
    w.account.contacts.filter(role="primary").update(user=user)
    client.force_login(user)
    response = client.get("/portal/")
    assert response.status_code == 403
    assert "isn’t set up as a customer login" in body(response)


def test_a_customer_linked_to_no_account_is_told_so(client, w):
    client.force_login(UserFactory(username="carol", role=roles.CUSTOMER))
    for url in ("/portal/", "/portal/statements/", "/portal/cases/"):
        response = client.get(url)
        assert response.status_code == 200
        assert "isn’t linked to an account yet" in body(response)
    assert client.get(f"/portal/statements/{w.statement.pk}/").status_code == 200  # the same page, no data
    assert "INV-A-1" not in body(client.get(f"/portal/statements/{w.statement.pk}/"))


# --- logging in and out -------------------------------------------------------------------------------------


def test_portal_login_page_and_redirects(client, w):
    page = client.get("/portal/login/")
    assert page.status_code == 200
    assert "Log in to your account" in body(page)
    response = client.post("/portal/login/", {"username": "alice", "password": "pass-Word-123"})
    assert response.status_code == 302 and response["Location"] == "/portal/"
    # Already logged in: the login page goes on to the portal.
    assert client.get("/portal/login/")["Location"] == "/portal/"


def test_portal_login_honours_next(client, w):
    response = client.post(
        "/portal/login/?next=/portal/cases/",
        {"username": "alice", "password": "pass-Word-123", "next": "/portal/cases/"},
    )
    assert response["Location"] == "/portal/cases/"


def test_portal_login_refuses_a_foreign_next(client, w):
    response = client.post(
        "/portal/login/", {"username": "alice", "password": "pass-Word-123", "next": "https://evil.example/"}
    )
    assert response["Location"] == "/portal/"


def test_portal_login_with_a_wrong_password(client, w):
    response = client.post("/portal/login/", {"username": "alice", "password": "nope"})
    assert response.status_code == 200
    assert "That username and password do not match" in body(response)
    assert "_auth_user_id" not in client.session


def test_staff_logging_in_at_the_portal_land_on_the_csr_home(client, w):
    response = client.post("/portal/login/", {"username": "csr1", "password": "pass-Word-123"})
    assert response["Location"] == reverse("csr-home")


def test_customers_logging_in_at_the_csr_login_land_in_the_portal(client, w):
    response = client.post(reverse("login"), {"username": "alice", "password": "pass-Word-123"})
    assert response["Location"] == "/portal/"
    # ...and the CSR home sends them there too, instead of a 403.
    assert client.get(reverse("csr-home"))["Location"] == "/portal/"


def test_staff_still_log_in_to_the_csr_home(client, w):
    response = client.post(reverse("login"), {"username": "csr1", "password": "pass-Word-123"})
    assert response["Location"] == reverse("csr-home")


def test_logout_returns_to_the_portal_login(alice):
    response = alice.post("/portal/logout/")
    assert response.status_code == 302 and response["Location"] == "/portal/login/"
    assert alice.get("/portal/").status_code == 302


# --- another customer's ids and numbers in the URLs: 404 ----------------------------------------------------


@pytest.fixture
def bobs(w):
    """Bob's statement line, invoice and case (alice must reach none of them)."""
    invoices_render(statement_ids=[w.other_statement.pk], actor="test")
    case, _ = dispute_open(
        statement=w.other_statement, line=w.line(1, w.other_statement), amount="5.00", reason="Wrong",
        channel="portal", actor=w.other_customer,
    )  # fmt: skip
    return {
        "line": w.line(1, w.other_statement),
        "invoice": Invoice.objects.get(statement=w.other_statement),
        "case": case,
    }


def _not_found(response) -> None:
    assert response.status_code == 404
    assert "We couldn’t find that page" in body(response)  # the portal's own 404, same as for no such id


def test_another_customers_statement_is_not_found(alice, w, bobs):
    other = w.other_statement
    _not_found(alice.get(f"/portal/statements/{other.pk}/"))
    _not_found(alice.get(f"/portal/statements/{other.pk}/dispute/?line={bobs['line'].pk}"))
    _not_found(alice.get("/portal/statements/999999/"))
    # Alice's statement with Bob's line, and Bob's statement with Alice's line.
    _not_found(alice.get(f"/portal/statements/{w.statement.pk}/dispute/?line={bobs['line'].pk}"))
    _not_found(alice.get(f"/portal/statements/{other.pk}/dispute/?line={w.line(1).pk}"))
    _not_found(alice.get(f"/portal/statements/{w.statement.pk}/dispute/?line=abc"))
    _not_found(alice.get(f"/portal/statements/{w.statement.pk}/dispute/"))


def test_disputing_another_customers_line_is_not_found_and_changes_nothing(alice, w, bobs):
    page = alice.get(f"/portal/statements/{w.statement.pk}/dispute/?line={w.line(1).pk}")
    token = form_token(page)
    before = (Case.objects.count(), Dispute.objects.count())
    for statement, line in ((w.statement, bobs["line"]), (w.other_statement, bobs["line"]),
                            (w.other_statement, w.line(1))):  # fmt: skip
        response = alice.post(
            f"/portal/statements/{statement.pk}/dispute/",
            {"line": line.pk, "amount": "5.00", "reason": "Not mine", "token": token},
        )
        _not_found(response)
    assert (Case.objects.count(), Dispute.objects.count()) == before
    assert Statement.objects.get(pk=w.other_statement.pk).disputed_amount == 5


def test_another_customers_invoice_files_are_not_found(alice, w, bobs):
    number = bobs["invoice"].number
    _not_found(alice.get(f"/portal/invoices/{number}.pdf"))
    _not_found(alice.get(f"/portal/invoices/{number}.html"))
    _not_found(alice.get("/portal/invoices/INV-99999999.pdf"))
    assert alice.get(f"/portal/invoices/{number}.xml").status_code == 404  # not a portal format at all


def test_another_customers_case_is_not_found_and_cannot_be_replied_to(alice, w, bobs):
    number = bobs["case"].number
    _not_found(alice.get(f"/portal/cases/{number}/"))
    events = CaseEvent.objects.count()
    _not_found(alice.post(f"/portal/cases/{number}/reply/", {"text": "Hello from Alice"}))
    assert CaseEvent.objects.count() == events
    _not_found(alice.get("/portal/cases/CS-9999999/"))


def test_bob_sees_his_own(bob, w, bobs):
    assert bob.get(f"/portal/statements/{w.other_statement.pk}/").status_code == 200
    assert bob.get(f"/portal/cases/{bobs['case'].number}/").status_code == 200
    assert bob.get(f"/portal/invoices/{bobs['invoice'].number}.pdf").status_code == 200
    _not_found(bob.get(f"/portal/statements/{w.statement.pk}/"))


def test_switching_to_another_customers_account_is_not_found(alice, w):
    _not_found(alice.post("/portal/account/", {"account": w.other_account.number}))
    assert alice.session.get("portal_account") is None


def test_unknown_and_staff_only_processes_are_not_found(alice, w):
    _not_found(alice.get("/portal/help/no-such-thing/"))
    process = w.processes["suspend_billing"]
    process.portal = False
    process.save(update_fields=["portal"])
    _not_found(alice.get(f"/portal/help/{process.code}/"))
    _not_found(alice.post(f"/portal/help/{process.code}/", {"subject": "Stop"}))
    assert Case.objects.count() == 0


def test_a_staff_raised_case_of_bob_stays_bobs(alice, w):
    case, _ = case_open(
        account=w.other_account, process=w.processes["billing-inquiry"], subject="Bob called",
        channel="csr", actor=w.csr,
    )  # fmt: skip
    _not_found(alice.get(f"/portal/cases/{case.number}/"))
    assert case.number not in body(alice.get("/portal/cases/"))


def test_forms_need_csrf(w):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(w.customer)
    response = client.post("/portal/help/billing-inquiry/", {"subject": "Hi"})
    assert response.status_code == 403
    assert Case.objects.count() == 0
