"""Personal data: the scans the suite runs over the whole run (tests/conftest.py, tests/security/pii.py) find
what they look for, so that a clean run means something; and the product's own paths that meet card data
and secrets (a refused card number, a failed login, a rejected API key) log none of it."""

from __future__ import annotations

import logging
from contextlib import contextmanager

import pytest
from rest_framework.test import APIClient

from accounts.models import Contact
from billing_mgmt.middleware import RequestIdLogFilter
from payments.services import looks_like_card_number
from tests.disputes.builders import world
from tests.factories import BillerFactory, api_key_for
from tests.security import pii

CARD = "4111 1111 1111 1111"  # a test card number (passes Luhn)


@pytest.fixture
def w(db):
    return world()


@contextmanager
def planted(contact: Contact, **values):
    """Values written straight to a contact's row (the product's own writes refuse card numbers: that is
    what the scan proves), put back before the test ends: the run's own scan after each test would (rightly)
    fail it otherwise."""
    original = {name: getattr(contact, name) for name in values}
    Contact.objects.filter(pk=contact.pk).update(**values)
    try:
        yield
    finally:
        Contact.objects.filter(pk=contact.pk).update(**original)


def test_the_after_test_scan_finds_a_planted_card_number(w):
    assert pii.scan_after_test() == []  # the world itself is clean
    contact = Contact.objects.filter(account=w.account).first()
    with planted(contact, name=f"Card {CARD}"):
        found = pii.scan_after_test()
    assert len(found) == 1 and found[0].startswith("accounts_contact.name (row ")
    assert found[0].endswith(": a card number")


def test_the_full_scan_finds_a_card_number_and_a_cvv_in_any_text_column(w):
    contact = Contact.objects.filter(account=w.account).first()
    with planted(contact, phone="4111-1111-1111-1111", email="cvc=987@example.com"):
        found = pii.scan_tables()
    assert any(f.startswith("accounts_contact.phone") and f.endswith("a card number") for f in found)
    assert any(f.startswith("accounts_contact.email") and f.endswith("a CVV") for f in found)
    assert not any("accounts_account" in f for f in found)


def test_the_scan_reads_every_text_column_of_every_table(db):
    columns = pii.text_columns(refresh=True)
    assert "accounts_contact" in columns and "name" in columns["accounts_contact"]
    assert "django_session" in columns and "session_data" in columns["django_session"]
    assert "axes_accessattempt" in columns  # tables of third-party apps too
    assert sum(len(c) for c in columns.values()) > 200


def test_no_column_is_named_like_a_cvv(db):
    assert pii.cvv_columns() == []
    assert pii.CVV_COLUMN.search("card_cvv") and pii.CVV_COLUMN.search("cvc")
    assert not pii.CVV_COLUMN.search("cidr") and not pii.CVV_COLUMN.search("incident")


def test_the_patterns():
    assert pii.card_or_cvv(f"paid with {CARD}") == "a card number"
    assert pii.card_or_cvv("4111 1111 1111 1112") == ""  # fails Luhn
    # Digests and password hashes hold long digit runs by chance: not card numbers.
    digest = "ab4111111111111111cd" + "0" * 44
    assert looks_like_card_number(digest) and pii.card_or_cvv(digest) == ""
    assert pii.card_or_cvv("md5$Ab12$4111111111111111e9f0aa") == ""
    assert pii.card_or_cvv(f"{digest} then {CARD}") == "a card number"
    # So do UUIDs (an export's id): this one's "6946-4225-8288-0" is 13 digits that pass the Luhn check.
    export_id = "31c1a972-6946-4225-8288-0b9b221f729a"
    assert looks_like_card_number(export_id) and pii.card_or_cvv(f'{{"export_id": "{export_id}"}}') == ""
    assert pii.card_or_cvv(f"{export_id} {CARD}") == "a card number"
    # What the tests check pages and answers for: the test card echoed, not an id that happens to be 4111.
    for text in ("4111 1111 1111 1111", "x4111111111111111", "card 4111-1111"):
        assert pii.echoes_test_card(text), text
    assert not pii.echoes_test_card('<a href="/statements/4111/">INV-A-1</a>')
    for text in ('{"cvv": "123"}', "CVC=9876", "security code is 123", "card_code: 555"):
        assert pii.card_or_cvv(text) == "a CVV", text
    for text in ('{"fields": {"cvv": ["Never send a CVV."]}}', "cvv refused", "order 123"):
        assert pii.card_or_cvv(text) == "", text


def test_the_log_check_knows_passwords_keys_sessions_and_authorization(db):
    raw = api_key_for(BillerFactory(code="pii-biller"))  # remembered by tests/conftest.py
    secret = raw.partition(".")[2]
    assert secret in pii.API_KEY_SECRETS
    assert pii.log_problem(f"calling with {raw}") == "an API key"
    assert pii.log_problem(f"prefix {raw.partition('.')[0]} used") == ""  # the prefix names a key, harmlessly
    from django.contrib.sessions.backends.db import SessionStore

    session = SessionStore()
    session.create()
    assert pii.log_problem(f"session {session.session_key}") == "a session id"
    assert pii.log_problem("login failed for csr with pass-Word-123") == "a password"
    assert pii.log_problem("headers: Authorization: Api-Key abc.def") == "an Authorization header"
    assert pii.log_problem("Bearer eyJhbGciOiJIUzI1NiJ9.x") == "an Authorization header"
    assert pii.log_problem("AXES: New login failure by {username: '****'}") == ""


class _Records(logging.Handler):
    def __init__(self):
        super().__init__()
        self.filters.append(RequestIdLogFilter())
        self.texts: list[str] = []

    def emit(self, record):
        self.texts.append(record.getMessage())


@pytest.fixture
def records():
    handler = _Records()
    logging.getLogger().addHandler(handler)
    previous = logging.getLogger().level
    logging.getLogger().setLevel(logging.DEBUG)
    yield handler.texts
    logging.getLogger().setLevel(previous)
    logging.getLogger().removeHandler(handler)


def test_failed_logins_and_bad_api_keys_log_no_secret(client, w, records):
    client.post("/login/", {"username": w.csr.username, "password": "wrong-password"})
    client.post("/portal/login/", {"username": w.customer.username, "password": "wrong-password"})
    raw = api_key_for(BillerFactory(code="pii-logs"))
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Api-Key {raw}x")  # a wrong key
    assert api.get("/api/v1/statements/").status_code == 401
    api.credentials(HTTP_AUTHORIZATION=f"Api-Key {raw}")
    assert api.post("/api/v1/ingest/bulk/", {"card": CARD, "cvv": "123"}, format="json").status_code == 400
    assert any("AXES" in text for text in records)  # the failures were logged (without their secrets)
    assert [(t, pii.log_problem(t)) for t in records if pii.log_problem(t)] == []
