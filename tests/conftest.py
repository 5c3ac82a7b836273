"""Shared fixtures. The suite runs on PostgreSQL (the production database): see `make test`."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.backends.signals import connection_created
from rest_framework.test import APIClient

from billing_mgmt import roles
from tests import factories


def _allow_test_flush(sender, connection, **kwargs) -> None:
    """The audit trail refuses TRUNCATE (billing_mgmt migration 0004) unless the session allows it: the
    flush after each transactional test truncates every table, so test connections allow it. The product
    never does; tests/security/test_audit_trail.py proves TRUNCATE is refused without it."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET billing_mgmt.allow_truncate = 'on'")


connection_created.connect(_allow_test_flush, dispatch_uid="tests-allow-audit-truncate")


def pytest_report_header(config):
    from django.conf import settings

    db = settings.DATABASES["default"]
    return f"database: {db['ENGINE']} {db.get('NAME')} on {db.get('HOST') or 'local socket'}"


@pytest.fixture(scope="session", autouse=True)
def _invoice_files(tmp_path_factory):
    """Invoice documents go to a temporary folder (one per test process), never to var/media."""
    from django.conf import settings
    from django.test import override_settings

    location = tmp_path_factory.mktemp("invoice-files")
    storages = {
        **settings.STORAGES,
        "invoices": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(location)},
        },
    }
    with override_settings(STORAGES=storages):
        yield location


@pytest.fixture(scope="session", autouse=True)
def _fast_password_hashing():
    """Test users' passwords are hashed with a fast hasher: production's PBKDF2 (a million rounds, on purpose)
    would spend most of a test's time creating its users. Logging in still checks the password."""
    from django.test import override_settings

    with override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"]):
        yield


# --- personal data and secrets: checked over the whole run (tests/security/pii.py) --------------------------

_PII_FINDINGS: list[str] = []  # card numbers or CVVs found in the database, with the test that wrote them
_PII_UNSCANNED: list[str] = []  # tests after which the database could not be read (e.g. a dropped connection)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    """After each test that used the database, and before its rollback or flush hides its rows, scan the rows
    it wrote for card numbers and CVVs."""
    yield
    if "_django_db_helper" not in item.fixturenames:
        return
    from tests.security import pii

    try:
        found = pii.scan_after_test()
    except Exception as exc:  # noqa: BLE001 - the test's own connection may be gone on purpose
        _PII_UNSCANNED.append(f"{item.nodeid}: {type(exc).__name__}")
        if not connection.in_atomic_block:
            connection.close_if_unusable_or_obsolete()  # a dropped connection is replaced, as after a request
        return
    _PII_FINDINGS.extend(f"{place} (written by {item.nodeid})" for place in found)


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    """pytest-django's, and at the end of the run, before the test database goes, the scan of all of it
    (what transactional tests and session fixtures left, and any column named like a CVV)."""
    yield
    from tests.security import pii

    with django_db_blocker.unblock():
        _PII_FINDINGS.extend(
            f"{place} (at the end of the run)" for place in pii.scan_tables() + pii.cvv_columns()
        )


@pytest.fixture(scope="session", autouse=True)
def _no_personal_data_or_secrets_in_logs_or_tables():
    """Every log record of the whole run is checked: none may carry anything shaped like a card number or a
    CVV (tests send some on purpose; the product must refuse them without writing them anywhere), a test
    password, a raw API key or session id handed out in the run, or an Authorization header. The database
    findings of the run (above) fail it here too: one error at the end of the run names table and column."""
    import logging

    from django.contrib.sessions.backends.base import SessionBase

    from accounts.models import BillerApiKey
    from tests.security import pii

    seen: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            try:
                text = record.getMessage()
            except Exception:  # noqa: BLE001 - a badly formatted record is not ours to judge
                return
            problem = pii.log_problem(text)
            if problem:
                seen.append(f"{problem} in {record.name}: {text[:200]}")

    # Remember every raw API key and session id handed out, so that the log check knows them.
    generate, new_session_key = BillerApiKey.generate.__func__, SessionBase._get_new_session_key

    def generate_and_remember(cls):
        prefix, raw = generate(cls)
        pii.API_KEY_SECRETS.add(raw.partition(".")[2])
        return prefix, raw

    def new_session_key_remembered(self):
        key = new_session_key(self)
        pii.SESSION_KEYS.add(key)
        return key

    BillerApiKey.generate = classmethod(generate_and_remember)
    SessionBase._get_new_session_key = new_session_key_remembered
    handler = Collect()
    logging.getLogger().addHandler(handler)
    yield
    logging.getLogger().removeHandler(handler)
    BillerApiKey.generate = classmethod(generate)
    SessionBase._get_new_session_key = new_session_key
    assert not seen, f"personal data or secrets were logged: {seen[:5]}"
    unscanned = f" ({len(_PII_UNSCANNED)} tests could not be scanned, e.g. {_PII_UNSCANNED[:2]})"
    assert not _PII_FINDINGS, (
        f"card data in the database{unscanned if _PII_UNSCANNED else ''}: {_PII_FINDINGS[:10]}"
    )


@pytest.fixture(autouse=True)
def _require_postgresql(request):
    """The suite proves behaviour on the production database; refuse to run quietly on another."""
    if "django_db_setup" in request.fixturenames or request.node.get_closest_marker("django_db"):
        assert connection.vendor == "postgresql", (
            "Tests run on PostgreSQL: set DATABASE_URL=postgres://... or use `make test`."
        )


@pytest.fixture
def user_factory(db):
    return factories.UserFactory


@pytest.fixture
def biller_factory(db):
    return factories.BillerFactory


@pytest.fixture
def account_factory(db):
    return factories.AccountFactory


@pytest.fixture
def contact_factory(db):
    return factories.ContactFactory


@pytest.fixture
def biller_reference_factory(db):
    return factories.BillerReferenceFactory


@pytest.fixture
def csr_user(db):
    return factories.UserFactory(username="csr", role=roles.CSR)


@pytest.fixture
def supervisor_user(db):
    return factories.UserFactory(username="supervisor", role=roles.SUPERVISOR)


@pytest.fixture
def billing_admin_user(db):
    return factories.UserFactory(username="billing-admin", role=roles.BILLING_ADMIN)


@pytest.fixture
def api_client():
    return APIClient()


@pytest.fixture
def biller_client(db):
    """Return a function making an APIClient authenticated as the given biller's API client."""

    def make(biller):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Api-Key {factories.api_key_for(biller)}")
        return client

    return make


@pytest.fixture
def csr_client(client, csr_user):
    """A Django test client logged in as a CSR."""
    client.force_login(csr_user)
    return client


@pytest.fixture
def fake():
    """A fake biller serving the pull contract over real HTTP on a free port (statements.fake_biller)."""
    from statements.fake_biller import FakeBiller

    with FakeBiller(port=0) as server:
        yield server


@pytest.fixture
def eager():
    """Celery tasks run in the process that queues them (after commit): for tests that are not about the
    queue (tests/kernel/test_celery_worker.py runs a real worker)."""
    from billing_mgmt.celery import app as celery_app

    previous = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = previous


@pytest.fixture
def admin_client(client, billing_admin_user):
    """Django admin as a billing admin (replaces pytest-django's superuser ``admin_client``): permissions
    come from the Billing admin group, as in production."""
    assert not billing_admin_user.is_superuser
    client.force_login(billing_admin_user)
    return client


@pytest.fixture
def superuser_client(client, user_factory):
    user = user_factory(username="root")
    user.is_staff = user.is_superuser = True
    user.save()
    client.force_login(user)
    return client
