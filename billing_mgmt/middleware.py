"""Request ids: every request gets one (or keeps the caller's X-Request-ID); logs and audit records carry
it. And the idle timeout of staff sessions."""

import contextvars
import logging
import re
import time
import uuid

from django.conf import settings

logger = logging.getLogger("billing_mgmt.sessions")

_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
_VALID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


def current_request_id() -> str:
    return _request_id.get()


def set_request_id(value: str) -> contextvars.Token:
    """For Celery tasks and commands, which have no HTTP request but should still be traceable."""
    return _request_id.set(value)


def reset_request_id(token: contextvars.Token) -> None:
    _request_id.reset(token)


class RequestIdMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        incoming = request.headers.get("X-Request-ID", "")
        request_id = incoming if _VALID.match(incoming) else uuid.uuid4().hex
        token = _request_id.set(request_id)
        request.request_id = request_id
        try:
            response = self.get_response(request)
            log_refusal(request, response)
        finally:
            _request_id.reset(token)
        response["X-Request-ID"] = request_id
        return response


# --- refused access -----------------------------------------------------------------------------------------

security_logger = logging.getLogger("billing_mgmt.security")
REFUSALS = (403, 404)


def _actor(request) -> str:
    """Who asked, without personal data: a biller's API client by its biller's code and its key's id (never
    the key), a person by user id (never the username, which may be an e-mail address)."""
    user = getattr(request, "user", None)
    if getattr(user, "is_api_client", False):
        return f"api-client biller={user.biller.code} key={user.key.pk}"
    if user is not None and user.is_authenticated:
        return f"user={user.pk}"
    return "anonymous"


def log_refusal(request, response) -> None:
    """One warning for each 403 or 404 of a route: a role without the permission, or a row that is not the
    caller's (another biller's account, another customer's statement answer 404 like one that does not
    exist). It names the route and the actor, never the path, query or body: they carry account numbers,
    references and names. A URL that matches no route is not logged here."""
    if response.status_code not in REFUSALS:
        return
    match = getattr(request, "resolver_match", None)
    if match is None:
        return
    security_logger.warning(
        "Access refused: %s %s %s by %s",
        response.status_code,
        request.method,
        match.view_name,
        _actor(request),
    )


class RequestIdLogFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = current_request_id()
        return True


# --- idle timeout for staff ---------------------------------------------------------------------------------

# Session keys: whether the login is a staff member's (decided once, at login, so that no request reads the
# user's groups again), and when (epoch seconds) that staff session last made a request.
IDLE_STAFF_KEY = "_idle_staff"
IDLE_SEEN_KEY = "_idle_seen"
# The last-seen time is written at most this often: a session save on every request (every htmx part of the
# account page) would be a write per request. The timeout is therefore exact to within this many seconds.
IDLE_WRITE_EVERY = 60


def _now() -> float:
    return time.time()


def mark_login(sender, request, user, **kwargs) -> None:
    """``user_logged_in`` receiver (connected in apps.py): a staff login starts its idle clock."""
    from billing_mgmt.roles import is_staff_member

    session = getattr(request, "session", None)
    if session is None:
        return
    if is_staff_member(user):
        session[IDLE_STAFF_KEY] = True
        session[IDLE_SEEN_KEY] = int(_now())
    else:
        session.pop(IDLE_STAFF_KEY, None)
        session.pop(IDLE_SEEN_KEY, None)


class StaffIdleTimeoutMiddleware:
    """Logs out a staff session after ``settings.STAFF_IDLE_TIMEOUT`` seconds without a request; the request
    then goes on as an anonymous one, so each page answers as it does for anyone not logged in (a CSR page
    redirects to the login, an htmx fragment answers HX-Redirect to it, the API answers 401/403, admin shows
    its login). Customers' sessions last SESSION_COOKIE_AGE."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        session = getattr(request, "session", None)
        if session is not None and session.get(IDLE_STAFF_KEY):
            timeout = getattr(settings, "STAFF_IDLE_TIMEOUT", 0)
            now = int(_now())
            seen = session.get(IDLE_SEEN_KEY, now)
            if timeout and now - seen > timeout:
                from django.contrib.auth import logout
                from django.contrib.auth.models import AnonymousUser

                logger.info("Staff session ended after %s s without a request.", now - seen)
                logout(request)  # flushes the session: the old key is deleted from the store
                request.user = AnonymousUser()
            elif now - seen >= IDLE_WRITE_EVERY:
                session[IDLE_SEEN_KEY] = now
        return self.get_response(request)
