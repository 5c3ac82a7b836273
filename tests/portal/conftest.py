from __future__ import annotations

import re

import pytest
from django.core import mail

from tests.disputes.builders import world


@pytest.fixture(autouse=True)
def locmem(settings):
    """Case e-mails go to django.core.mail.outbox; passwords hash fast (the factories hash one per user)."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.PORTAL_URL = "https://portal.example.test/portal/"
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    mail.outbox = []


@pytest.fixture
def w(db):
    """Two customers (alice, bob) with an account and a statement each (alice's: 40.00, 25.00, 10.00)."""
    return world()


@pytest.fixture
def alice(client, w):
    """A test client logged in as alice, the first customer."""
    client.force_login(w.customer)
    return client


@pytest.fixture
def bob(client, w):
    """A test client logged in as bob, the other customer."""
    client.force_login(w.other_customer)
    return client


TOKEN = re.compile(r'name="token" value="([^"]+)"')


def form_token(response) -> str:
    """The one-time token of the form on this page."""
    match = TOKEN.search(response.content.decode())
    assert match, "no form token on the page"
    return match.group(1)


def body(response) -> str:
    return response.content.decode()
