"""Sessions: cookie attributes, a new session id at every login, logout ending the server session, the staff
idle timeout, and login throttling (django-axes)."""

from __future__ import annotations

import pytest
from django.contrib.sessions.backends.db import SessionStore
from django.test import override_settings
from django.urls import reverse

from billing_mgmt import middleware, roles
from tests.disputes.builders import world
from tests.factories import UserFactory
from tests.pages import HTMX

PASSWORD = "pass-Word-123"  # tests.factories.UserFactory's
PRODUCTION_COOKIES = {"SESSION_COOKIE_SECURE": True, "CSRF_COOKIE_SECURE": True}


@pytest.fixture
def w(db):
    return world()


@pytest.fixture
def superuser(db):
    user = UserFactory(username="root-user")
    user.is_staff = user.is_superuser = True
    user.save()
    return user


def _login(client, url: str, username: str, password: str = PASSWORD):
    return client.post(url, {"username": username, "password": password})


def _session_key(client) -> str:
    return client.cookies["sessionid"].value


# --- cookies ------------------------------------------------------------------------------------------------


def _cookie_attributes(client, w):
    csrf = client.get(reverse("login")).cookies["csrftoken"]
    response = _login(client, reverse("login"), w.csr.username)
    assert response.status_code == 302
    return response.cookies["sessionid"], csrf


def test_cookies_are_httponly_and_samesite_lax_by_default(client, w):
    session, csrf = _cookie_attributes(client, w)
    assert session["httponly"] is True
    assert session["samesite"] == "Lax" and csrf["samesite"] == "Lax"
    assert session["path"] == "/"
    # Development over plain http: not Secure (production turns it on, below and tests/kernel).
    assert not session["secure"] and not csrf["secure"]


@override_settings(**PRODUCTION_COOKIES)
def test_cookies_are_secure_with_production_settings(client, w):
    session, csrf = _cookie_attributes(client, w)
    assert session["secure"] is True and csrf["secure"] is True
    assert session["httponly"] is True and session["samesite"] == "Lax"


# --- a new session id at login ------------------------------------------------------------------------------


def _anonymous_session(client) -> str:
    """A session an attacker could have planted before the victim logs in."""
    session = client.session
    session["planted"] = "yes"
    session.save()
    client.cookies["sessionid"] = session.session_key
    return session.session_key


@pytest.mark.parametrize(
    ("url", "who"),
    [("/login/", "csr"), ("/portal/login/", "customer"), ("/admin/login/", "superuser")],
)
def test_login_gives_a_new_session_id(client, w, superuser, url, who):
    username = {"csr": w.csr, "customer": w.customer, "superuser": superuser}[who].username
    before = _anonymous_session(client)
    response = _login(client, url, username)
    assert response.status_code == 302, response.content[:500]
    after = _session_key(client)
    assert after != before
    assert not SessionStore().exists(before)  # the planted key is gone from the store
    assert SessionStore(session_key=after).load()["_auth_user_id"] == str(
        {"csr": w.csr, "customer": w.customer, "superuser": superuser}[who].pk
    )


# --- logout ends the server session -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("login_url", "logout_url", "who", "page"),
    [
        ("/login/", "/logout/", "csr", "/"),
        ("/portal/login/", "/portal/logout/", "customer", "/portal/"),
    ],
)
def test_logout_deletes_the_session_and_the_old_cookie_no_longer_works(
    client, w, login_url, logout_url, who, page
):
    user = w.csr if who == "csr" else w.customer
    assert _login(client, login_url, user.username).status_code == 302
    key = _session_key(client)
    assert client.get(page).status_code == 200
    assert client.post(logout_url).status_code == 302
    assert not SessionStore().exists(key)
    client.cookies["sessionid"] = key  # replay the old cookie
    response = client.get(page)
    assert response.status_code == 302 and "login" in response["Location"]


# --- idle timeout for staff ---------------------------------------------------------------------------------


class Clock:
    def __init__(self, start: float = 1_900_000_000.0):
        self.now = start

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(middleware, "_now", clock)
    return clock


@override_settings(STAFF_IDLE_TIMEOUT=1800)
def test_staff_are_logged_out_after_the_idle_timeout(client, w, clock):
    client.force_login(w.csr)
    key = _session_key(client)
    clock.now += 1799
    assert client.get("/").status_code == 200  # just inside: still logged in, and the clock restarts
    clock.now += 1799
    assert client.get("/").status_code == 200
    clock.now += 1801
    response = client.get("/")
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))
    assert not SessionStore().exists(key)
    clock.now += 1
    assert client.get("/").status_code == 302  # stays logged out


@override_settings(STAFF_IDLE_TIMEOUT=1800)
def test_activity_keeps_a_staff_session_alive_across_hours(client, w, clock):
    client.force_login(w.supervisor)
    for _ in range(8):  # four hours, a request every 30 minutes less a second
        clock.now += 1799
        assert client.get("/").status_code == 200


@override_settings(STAFF_IDLE_TIMEOUT=1800)
def test_an_expired_htmx_request_redirects_the_whole_page_to_login(client, w, clock):
    client.force_login(w.csr)
    url = reverse("account-part", args=[w.account.number, "activity"])
    assert client.get(url, **HTMX).status_code == 200
    clock.now += 1801
    page = reverse("account-detail", args=[w.account.number])
    response = client.get(url, HTTP_HX_CURRENT_URL=f"http://testserver{page}", **HTMX)
    assert response.status_code == 200 and "HX-Redirect" in response
    assert response["HX-Redirect"].startswith(reverse("login")) and page in response["HX-Redirect"]


@override_settings(STAFF_IDLE_TIMEOUT=1800)
def test_idle_admin_and_api_sessions_end_too(client, superuser, clock):
    client.force_login(superuser)
    assert client.get("/admin/").status_code == 200
    assert client.get("/api/v1/accounts/").status_code == 200
    clock.now += 1801
    response = client.get("/admin/")
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")
    assert client.get("/api/v1/accounts/").status_code in (401, 403)


@override_settings(STAFF_IDLE_TIMEOUT=1800)
def test_customers_are_not_subject_to_the_staff_idle_timeout(client, w, clock):
    client.force_login(w.customer)
    clock.now += 4 * 3600
    assert client.get("/portal/").status_code == 200


@override_settings(STAFF_IDLE_TIMEOUT=1800)
def test_a_staff_login_through_the_form_starts_the_clock(client, w, clock):
    assert _login(client, "/login/", w.csr.username).status_code == 302
    clock.now += 1801
    assert client.get("/").status_code == 302


# --- login throttling (django-axes) -------------------------------------------------------------------------


@pytest.fixture
def people(db):
    return (
        UserFactory(username="locked-csr", role=roles.CSR),
        UserFactory(username="other-csr", role=roles.CSR),
    )


@pytest.mark.parametrize("url", ["/login/", "/portal/login/", "/admin/login/"])
def test_the_sixth_wrong_password_locks_that_user_out(client, people, url):
    locked, other = people
    if url == "/admin/login/":
        for user in people:
            user.is_staff = True
            user.save(update_fields=["is_staff"])
    for _ in range(4):
        assert _login(client, url, locked.username, "wrong-password").status_code == 200  # the form again
    response = _login(client, url, locked.username, "wrong-password")  # the 5th: the limit is reached
    assert response.status_code == 429
    sixth = _login(client, url, locked.username, "wrong-password")
    assert sixth.status_code == 429 and b"too many login attempts" in sixth.content
    # The right password does not help while the lockout lasts.
    assert _login(client, url, locked.username).status_code == 429
    assert client.get("/").status_code == 302  # not logged in
    # Another user from the same address is not locked.
    assert _login(client, url, other.username).status_code == 302


def test_a_successful_login_resets_the_count(client, people):
    user, _ = people
    for _ in range(4):
        _login(client, "/login/", user.username, "wrong-password")
    assert _login(client, "/login/", user.username).status_code == 302
    client.post("/logout/")
    for _ in range(4):
        assert _login(client, "/login/", user.username, "wrong-password").status_code == 200
    assert _login(client, "/login/", user.username).status_code == 302


def test_the_lockout_is_per_address(client, people):
    user, _ = people
    for _ in range(5):
        _login(client, "/login/", user.username, "wrong-password")
    assert _login(client, "/login/", user.username).status_code == 429
    response = client.post(
        "/login/", {"username": user.username, "password": PASSWORD}, REMOTE_ADDR="10.9.8.7"
    )
    assert response.status_code == 302


def test_the_lockout_ends_after_the_cool_off(client, people, settings):
    from datetime import timedelta

    from axes.models import AccessAttempt

    user, _ = people
    for _ in range(5):
        _login(client, "/login/", user.username, "wrong-password")
    assert _login(client, "/login/", user.username).status_code == 429
    # 15 minutes later (the attempts' time moved back rather than the clock forward).
    AccessAttempt.objects.filter(username=user.username).update(
        attempt_time=AccessAttempt.objects.get(username=user.username).attempt_time - timedelta(minutes=16)
    )
    assert _login(client, "/login/", user.username).status_code == 302


def test_client_ip_trusts_only_the_configured_proxies(rf, settings):
    from billing_mgmt.throttling import client_ip

    request = rf.get("/", REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="6.6.6.6, 203.0.113.9")
    settings.TRUSTED_PROXY_COUNT = 0
    assert client_ip(request) == "10.0.0.2"  # no proxy trusted: a client's own header is ignored
    settings.TRUSTED_PROXY_COUNT = 1
    assert client_ip(request) == "203.0.113.9"  # what our proxy saw; the spoofed left entry is ignored
    settings.TRUSTED_PROXY_COUNT = 3
    assert client_ip(request) == "10.0.0.2"  # fewer entries than proxies: not trusted
