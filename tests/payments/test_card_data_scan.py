"""The card data scan finds a card number wherever it is (database text columns, log files), and the
product's own refusals leave none behind."""

from __future__ import annotations

import logging

import pytest
from django.core.management import call_command
from django.db import connection

from billing_mgmt.errors import ApplicationError
from payments.services import payment_method_add
from tests.security import pii

pytestmark = pytest.mark.django_db
PAN = "4111 1111 1111 1111"


def test_the_scan_finds_a_card_number_in_a_table_and_in_a_log(tmp_path, account_factory):
    account = account_factory()
    assert _scan() == 0
    with connection.cursor() as cursor:
        cursor.execute("UPDATE accounts_account SET name = %s WHERE id = %s", [f"Card {PAN}", account.pk])
    assert _scan() == 1
    log = tmp_path / "app.log"
    log.write_text("INFO all fine\nWARNING got 5500-0000-0000-0004 in a form\n")
    with connection.cursor() as cursor:
        cursor.execute("UPDATE accounts_account SET name = 'Clean' WHERE id = %s", [account.pk])
    assert _scan("--log", str(log)) == 1


def test_refused_card_input_leaves_nothing_in_the_database_or_the_logs(account_factory, csr_user, caplog):
    account = account_factory()
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ApplicationError):
        payment_method_add(
            account=account,
            kind="card",
            token=PAN.replace(" ", ""),
            last4="1111",
            expiry_month=1,
            expiry_year=2031,
            actor=csr_user,
        )
    with pytest.raises(ApplicationError):
        payment_method_add(account=account, kind="other", description=f"card {PAN}", actor=csr_user)
    assert _scan() == 0
    assert not pii.echoes_test_card(caplog.text)


def _scan(*args: str) -> int:
    try:
        call_command("scan_card_data", *args)
    except SystemExit as exit_:
        return int(exit_.code)
    return 0
