"""The pages work under the Content-Security-Policy (settings.CONTENT_SECURITY_POLICY) in a real browser: no
violation is reported while the CSR account page loads its htmx parts and draws its charts, nor on the
portal, Django admin (a change form, and django-celery-beat's form with its nonce'd script) or the API
docs."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from billing_mgmt import roles
from tests.disputes.builders import world
from tests.factories import UserFactory

pytestmark = pytest.mark.browser

# Runs before any page script and is not itself subject to the policy: it records every violation.
RECORD_VIOLATIONS = """
window.__csp = [];
document.addEventListener("securitypolicyviolation", function (e) {
  var where = e.sourceFile + ":" + e.lineNumber;
  window.__csp.push(e.violatedDirective + " blocked " + (e.blockedURI || "inline") + " at " + where);
});
"""


def _watch(page) -> list[str]:
    console: list[str] = []
    page.add_init_script(RECORD_VIOLATIONS)
    page.on("console", lambda m: console.append(m.text) if "Content Security Policy" in m.text else None)
    return console


def _violations(page, console) -> list[str]:
    return page.evaluate("window.__csp") + console


def _log_in(page, base: str, path: str, username: str) -> None:
    page.goto(f"{base}{path}")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill("pass-Word-123")
    page.get_by_role("button", name="Log in").click()


@pytest.fixture
def w(transactional_db):
    return world()


def test_the_account_page_works_under_the_policy(live_server, page, w):
    console = _watch(page)
    _log_in(page, live_server.url, "/login/", w.csr.username)
    expect(page.get_by_role("heading", name="Find an account")).to_be_visible()
    page.goto(f"{live_server.url}/accounts/{w.account.number}/")
    # htmx (a static file) loads the lazy parts: every "Loading…" placeholder is replaced.
    expect(page.locator(".section-loading")).to_have_count(0)
    # Chart.js (vendored) and the page's own script draw the charts.
    canvas = page.locator("canvas[data-chart]").first
    expect(canvas).to_be_attached()
    page.wait_for_function(
        "() => window.Chart && Chart.getChart(document.querySelector('canvas[data-chart]')) !== undefined"
    )
    # A form opened in place through htmx (a POST-less GET swap), then its own page.
    page.get_by_role("link", name="New payment").first.click()
    expect(page.locator("form[data-payment-form]")).to_be_visible()
    assert _violations(page, console) == []


def test_portal_admin_and_api_docs_work_under_the_policy(live_server, page, w, transactional_db):
    console = _watch(page)
    _log_in(page, live_server.url, "/portal/login/", w.customer.username)
    expect(page.get_by_role("link", name="Statements")).to_be_visible()
    page.goto(f"{live_server.url}/portal/statements/{w.statement.pk}/")
    expect(page.get_by_text("Mobile plan").first).to_be_visible()
    assert _violations(page, console) == []
    page.context.clear_cookies()

    admin = UserFactory(username="csp-admin", role=roles.BILLING_ADMIN)
    admin.is_superuser = True
    admin.save()
    _log_in(page, live_server.url, "/admin/login/", admin.username)
    page.goto(f"{live_server.url}/admin/accounts/biller/add/")
    expect(page.locator("#biller_form")).to_be_visible()
    page.goto(f"{live_server.url}/admin/django_celery_beat/periodictask/add/")
    expect(page.locator("#periodictask_form")).to_be_visible()
    # django-celery-beat's inline script ran (its nonce is in the policy): it hides the translation row.
    expect(page.locator(".field-crontab_translation")).to_be_hidden()
    page.goto(f"{live_server.url}/api/docs/")
    expect(page.locator(".swagger-ui .info")).to_be_visible()
    assert _violations(page, console) == []
