"""Shared fixtures. The suite runs on PostgreSQL (the production database): see `make test`."""

from __future__ import annotations

import pytest
from django.db import connection
from rest_framework.test import APIClient

from billing_mgmt import roles
from tests import factories


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


@pytest.fixture(scope="session", autouse=True)
def _no_card_numbers_in_logs():
    """Every log record of the whole run is checked: none may carry anything shaped like a card number (tests
    send some on purpose; the product must refuse them without writing them anywhere)."""
    import logging

    from payments.services import looks_like_card_number

    seen: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            try:
                text = record.getMessage()
            except Exception:  # noqa: BLE001 - a badly formatted record is not ours to judge
                return
            if looks_like_card_number(text):
                seen.append(f"{record.name}: {text[:200]}")

    handler = Collect()
    logging.getLogger().addHandler(handler)
    yield
    logging.getLogger().removeHandler(handler)
    assert not seen, f"card-number-shaped data was logged: {seen[:5]}"


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
