"""Security headers on pages, the portal and the API; the Content-Security-Policy and the templates it relies
on (no inline script, no inline event handler anywhere). tests/browser/test_csp.py proves the pages work
under it in a real browser."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.http import HttpResponse
from django.test import RequestFactory

from tests.disputes.builders import world
from tests.factories import BillerFactory, api_key_for

ROOT = Path(__file__).resolve().parents[2]


def _policy(response) -> dict[str, list[str]]:
    header = response["Content-Security-Policy"]
    return {part.split()[0]: part.split()[1:] for part in (p.strip() for p in header.split(";")) if part}


def _assert_common(response) -> None:
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["Cross-Origin-Opener-Policy"] == "same-origin"


def _assert_page_policy(response) -> None:
    policy = _policy(response)
    assert policy["default-src"] == ["'self'"]
    assert policy["script-src"][0] == "'self'"
    assert not {"'unsafe-inline'", "'unsafe-eval'", "*"} & set(policy["script-src"])
    assert policy["object-src"] == ["'none'"] and policy["frame-ancestors"] == ["'none'"]
    assert policy["base-uri"] == ["'self'"] and policy["form-action"] == ["'self'"]


@pytest.fixture
def w(db):
    return world()


def test_csr_pages_have_the_security_headers_and_policy(client, w):
    client.force_login(w.csr)
    for url in ("/", f"/accounts/{w.account.number}/"):
        response = client.get(url)
        assert response.status_code == 200
        _assert_common(response)
        _assert_page_policy(response)


def test_portal_and_login_pages_have_them(client, w):
    for url in ("/login/", "/portal/login/", "/admin/login/"):
        response = client.get(url)
        _assert_common(response)
        _assert_page_policy(response)
    client.force_login(w.customer)
    response = client.get("/portal/")
    assert response.status_code == 200
    _assert_common(response)
    _assert_page_policy(response)


def test_api_answers_have_them(w):
    from rest_framework.test import APIClient

    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Api-Key {api_key_for(BillerFactory(code='hdr-biller'))}")
    response = api.get("/api/v1/statements/")
    assert response.status_code == 200
    _assert_common(response)
    assert _policy(response)["default-src"] == ["'self'"]


def test_a_policy_a_view_set_itself_is_kept(settings):
    """Invoice documents carry their own sandbox policy (invoicing.views.DOCUMENT_CSP): never replaced."""
    from csp.middleware import CSPMiddleware

    from invoicing.views import DOCUMENT_CSP

    def view(request):
        response = HttpResponse("<p>invoice</p>")
        response["Content-Security-Policy"] = DOCUMENT_CSP
        return response

    request = RequestFactory().get("/invoices/INV-1.html")
    middleware = CSPMiddleware(view)
    assert middleware(request)["Content-Security-Policy"] == DOCUMENT_CSP
    plain = CSPMiddleware(lambda r: HttpResponse("x"))(RequestFactory().get("/"))
    assert "default-src 'self'" in plain["Content-Security-Policy"]


def test_api_docs_page_has_no_inline_script(client, w):
    client.force_login(w.csr)
    page = client.get("/api/docs/")
    assert page.status_code == 200
    html = page.content.decode()
    assert INLINE_SCRIPT.findall(html) == []
    script = client.get("/api/docs/?script=")
    assert script.status_code == 200 and script["Content-Type"].startswith("application/javascript")


# --- the templates keep to the policy -----------------------------------------------------------------------

INLINE_SCRIPT = re.compile(
    r"<script\b(?![^>]*\b(?:src|nonce)=)(?![^>]*type=[\"']application/(?:ld\+)?json)[^>]*>", re.I
)
EVENT_HANDLER = re.compile(r"""<[a-z][^>]*\son[a-z]+\s*=\s*["']""", re.I)
JS_URL = re.compile(r"""(?:href|src|action)\s*=\s*["']\s*javascript:""", re.I)


def _templates():
    for folder in [ROOT / "templates", *ROOT.glob("*/templates")]:
        if ".venv" in folder.parts:
            continue
        yield from folder.rglob("*.html")


def test_the_scan_finds_inline_script_and_handlers():
    assert INLINE_SCRIPT.findall("<script>alert(1)</script>") == ["<script>"]
    assert INLINE_SCRIPT.findall('<script src="/static/a.js" defer></script>') == []
    assert INLINE_SCRIPT.findall('<script type="application/json" id="d">{}</script>') == []
    assert EVENT_HANDLER.findall('<button onclick="go()">') and not EVENT_HANDLER.findall('<a data-on="x">')
    assert JS_URL.findall('<a href="javascript:void(0)">')


def test_no_template_has_inline_script_or_event_handlers():
    """The policy allows scripts from this site only: an inline one would be blocked in the browser."""
    problems = []
    templates = list(_templates())
    assert len(templates) > 50
    for path in templates:
        text = path.read_text()
        rel = path.relative_to(ROOT)
        # Invoice documents are shown under their own policy (no script at all) or in a sandboxed frame.
        if "invoicing/documents" in str(rel):
            assert "<script" not in text, rel
            continue
        for pattern in (INLINE_SCRIPT, EVENT_HANDLER, JS_URL):
            problems += [f"{rel}: {m}" for m in pattern.findall(text)]
    assert problems == []
