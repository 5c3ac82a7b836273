"""CSRF on every form: each page with a form (CSR pages, the portal, the login pages, every admin page of
every registered model) puts the token into every POST form, and a POST without it is refused (403), for
the pages and for the API's session-authenticated writes. API-key clients need no token (no cookie to
ride)."""

from __future__ import annotations

import re

import pytest
from django.contrib import admin
from django.test import Client
from django.urls import NoReverseMatch, reverse
from rest_framework.test import APIClient

from disputes.services import case_open
from tests.disputes.builders import world
from tests.factories import BillerFactory, UserFactory, api_key_for
from tests.pages import whole_page

FORM = re.compile(r"<form\b([^>]*)>(.*?)</form>", re.S | re.I)
POST = re.compile(r"""\bmethod\s*=\s*["']?post\b""", re.I)
TOKEN_FIELD = 'name="csrfmiddlewaretoken"'


def post_forms_without_token(html: str) -> list[str]:
    """The opening tag of every <form method=post> that carries no CSRF token."""
    missing = []
    for match in FORM.finditer(html):
        attributes, inner = match.groups()
        if POST.search(attributes) and TOKEN_FIELD not in inner:
            missing.append(f"<form{attributes[:160]}>")
    return missing


def test_the_form_check_finds_a_form_without_a_token():
    html = '<form method="post" action="/x/"><input name="a"></form><form method="get"></form>'
    assert post_forms_without_token(html) == ['<form method="post" action="/x/">']
    ok = f'<form method="POST"><input type="hidden" {TOKEN_FIELD} value="t"></form>'
    assert post_forms_without_token(ok) == []


@pytest.fixture
def w(db):
    w = world()
    w.case, _ = case_open(
        account=w.account, process=w.processes["billing-inquiry"], subject="A question",
        description="Why?", channel="portal", actor=w.customer,
    )  # fmt: skip
    return w


@pytest.fixture
def superuser(db):
    user = UserFactory(username="csrf-root")
    user.is_staff = user.is_superuser = True
    user.save()
    return user


def _check(client, urls: list[str], *, whole: bool = False) -> tuple[list[str], list[str]]:
    """Every POST form's action on these pages, and the forms without a token."""
    actions, problems = [], []
    for url in urls:
        if whole:
            html = whole_page(client, url)
        else:
            response = client.get(url)
            assert response.status_code == 200, (url, response.status_code)
            html = response.content.decode()
        for match in FORM.finditer(html):
            if POST.search(match.group(1)):
                action = re.search(r"""\baction\s*=\s*["']([^"']*)""", match.group(1))
                actions.append(action.group(1).split("#")[0] if action else url)
        problems += [f"{url}: {form}" for form in post_forms_without_token(html)]
    return actions, problems


def test_every_post_form_of_the_csr_pages_carries_the_token(client, w):
    client.force_login(w.supervisor)  # a supervisor sees every CSR form (approvals, write-offs, refunds)
    number = w.account.number
    actions, problems = _check(client, [reverse("account-detail", args=[number])], whole=True)
    more = [
        "/",
        reverse("case-new", args=[number]),
        reverse("dispute-new", args=[w.statement.pk]),
        reverse("adjustment-queue"),
        reverse("case-queue"),
        reverse("case-detail", args=[w.case.number]),
        reverse("statement-detail", args=[number, w.statement.pk]),
        reverse("bill-preview", args=[number]),
        # The section forms open on their section's page (?form=, or in place through htmx).
        *(f"{reverse('account-section', args=[number, 'payments'])}?form={form}"
          for form in ("payment", "adjustment", "refund", "write-off")),
        f"{reverse('account-section', args=[number, 'payment-methods'])}?form=card",
    ]  # fmt: skip
    more_actions, more_problems = _check(client, more)
    assert problems + more_problems == []
    # The check saw the forms that matter (so an empty page cannot pass it).
    seen = set(actions + more_actions)
    for name, args in [
        ("payment-create", [number]), ("adjustment-create", [number]), ("payment-method-add", [number]),
        ("logout", []), ("case-comment", [w.case.number]),
    ]:  # fmt: skip
        assert reverse(name, args=args) in seen, (name, sorted(seen))


def test_every_post_form_of_the_portal_carries_the_token(client, w):
    client.force_login(w.customer)
    urls = [
        "/portal/",
        f"/portal/statements/{w.statement.pk}/",
        f"/portal/statements/{w.statement.pk}/dispute/?line={w.line(1).pk}",
        "/portal/help/",
        "/portal/help/billing-inquiry/",
        f"/portal/cases/{w.case.number}/",
    ]
    actions, problems = _check(client, urls)
    assert problems == []
    assert len(actions) >= 4  # logout on each page, the dispute, the help request and the reply forms


def test_the_login_pages_carry_the_token(client, db):
    actions, problems = _check(client, ["/login/", "/portal/login/", "/admin/login/"])
    assert problems == [] and len(actions) == 3


def test_every_admin_page_of_every_model_carries_the_token(client, superuser):
    """Generated from the admin registry: each model's change list (its actions form) and add form."""
    client.force_login(superuser)
    urls = []
    for model in admin.site._registry:
        info = (model._meta.app_label, model._meta.model_name)
        for view in ("changelist", "add"):
            try:
                url = reverse(f"admin:{info[0]}_{info[1]}_{view}")
            except NoReverseMatch:
                continue
            urls.append(url)
    checked, forms, problems = 0, 0, []
    for url in urls:
        response = client.get(url)
        if response.status_code != 200:  # e.g. an add page the admin does not offer (403), or a redirect
            assert response.status_code in (302, 403), (url, response.status_code)
            continue
        checked += 1
        html = response.content.decode()
        forms += sum(1 for m in FORM.finditer(html) if POST.search(m.group(1)))
        problems += [f"{url}: {form}" for form in post_forms_without_token(html)]
    assert problems == []
    assert checked >= len(admin.site._registry)  # at least one page per model
    assert forms >= checked // 2


# --- a POST without the token is refused --------------------------------------------------------------------


@pytest.fixture
def strict(db):
    """A client that enforces CSRF as a browser meets it (the test client skips the check by default)."""
    return Client(enforce_csrf_checks=True)


def _token(client, url: str) -> str:
    client.get(url)
    return client.cookies["csrftoken"].value


@pytest.mark.parametrize("url", ["/login/", "/portal/login/", "/admin/login/"])
def test_a_login_without_the_token_is_refused(strict, w, url):
    data = {"username": w.csr.username, "password": "pass-Word-123"}
    assert strict.post(url, data).status_code == 403
    # The same POST with the token logs in: the 403 was the token.
    assert strict.post(url, {**data, "csrfmiddlewaretoken": _token(strict, url)}).status_code in (200, 302)


def test_csr_and_portal_writes_without_the_token_are_refused(strict, w, superuser):
    number = w.account.number
    strict.force_login(w.supervisor)
    staff = [
        reverse("payment-create", args=[number]),
        reverse("adjustment-create", args=[number]),
        reverse("payment-method-add", args=[number]),
        reverse("case-new", args=[number]),
        reverse("dispute-new", args=[w.statement.pk]),
        reverse("case-comment", args=[w.case.number]),
        reverse("bill-now", args=[number]),
        "/logout/",
    ]
    for url in staff:
        assert strict.post(url, {"amount": "10.00"}).status_code == 403, url
    strict.force_login(w.customer)
    portal = [
        f"/portal/statements/{w.statement.pk}/dispute/",
        "/portal/help/billing-inquiry/",
        f"/portal/cases/{w.case.number}/reply/",
        "/portal/logout/",
    ]
    for url in portal:
        assert strict.post(url, {"text": "hello"}).status_code == 403, url
    strict.force_login(superuser)
    assert strict.post("/admin/accounts/biller/add/", {"code": "x", "name": "X"}).status_code == 403
    # Nothing was written by any of them.
    from accounts.models import Biller
    from disputes.models import CaseEvent
    from payments.models import Payment

    assert not Payment.objects.exists() and not Biller.objects.filter(code="x").exists()
    assert not CaseEvent.objects.filter(text="hello").exists()


def test_api_session_writes_need_the_token_and_api_keys_do_not(w):
    session = APIClient(enforce_csrf_checks=True)
    session.force_login(w.supervisor)
    refused = session.post("/api/v1/payments/", {}, format="json")
    assert refused.status_code == 403 and "CSRF" in refused.json()["error"]["message"]
    token = _token(session, "/")
    accepted = session.post("/api/v1/payments/", {}, format="json", HTTP_X_CSRFTOKEN=token)
    assert accepted.status_code == 400  # past CSRF: the empty payment is invalid
    biller = APIClient(enforce_csrf_checks=True)
    biller.credentials(HTTP_AUTHORIZATION=f"Api-Key {api_key_for(BillerFactory(code='csrf-biller'))}")
    answer = biller.post("/api/v1/ingest/bulk/", {}, format="json")
    assert answer.status_code == 400 and "CSRF" not in answer.content.decode()
