"""Foreign keys without a database constraint (billing_mgmt.references): which they are, and the check that
finds rows naming missing rows, as a function and as ``manage.py check_references``."""

from __future__ import annotations

import datetime as dt
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from billing_mgmt.references import dangling_references, unchecked_keys
from billruns.services import bill_create
from statements.models import StatementLine, UsageSummary
from tests.billruns import builders as b
from tests.factories import AccountFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def statement():
    plan = b.plan()
    b.recurring(plan, "30.00")
    b.usage_component(plan, unit_price="0.10")
    sub = b.subscription(AccountFactory(), plan, dt.date(2026, 6, 1))
    b.usage(sub, 10, dt.date(2026, 6, 3))
    return bill_create(account=sub.account, bill_date=dt.date(2026, 7, 1)).statement


def test_the_unenforced_keys_are_the_high_volume_ones():
    keys = {(model._meta.db_table, field.column) for model, field in unchecked_keys()}
    assert {
        ("billruns_calculationline", "segment_id"),
        ("billruns_calculationline", "component_id"),
        ("billruns_calculationline", "discount_id"),
        ("billruns_calculationline", "tax_rate_id"),
        ("billruns_ratedusage", "usage_record_id"),
        ("billruns_ratedusage", "segment_id"),
        ("billruns_usagetorate", "subscription_id"),
        ("billruns_segmentusage", "segment_id"),
        ("statements_statementline", "statement_id"),
        ("statements_statementline", "account_id"),
        ("statements_usagesummary", "statement_id"),
    } <= keys
    # The ledger, bills and segments keep their constraints.
    tables = {table for table, _ in keys}
    assert not tables & {"statements_financialtransaction", "statements_statement", "billruns_billsegment"}


def test_a_bill_leaves_no_dangling_reference(statement):
    assert statement.lines.count() >= 2 and UsageSummary.objects.filter(statement=statement).exists()
    assert dangling_references() == []
    out = StringIO()
    call_command("check_references", stdout=out)
    assert "none dangling" in out.getvalue()


def test_a_row_naming_a_missing_row_is_reported_and_fails_the_command(statement):
    # Only the database's missing constraint lets this through: the services never write such a row.
    line = statement.lines.first()
    StatementLine.objects.filter(pk=line.pk).update(statement_id=statement.pk + 1000, account_id=999_999)
    found = {(d.table, d.column): d for d in dangling_references()}
    assert set(found) == {
        ("statements_statementline", "statement_id"),
        ("statements_statementline", "account_id"),
    }
    assert found["statements_statementline", "statement_id"].rows == 1
    assert found["statements_statementline", "statement_id"].example_ids == [line.pk]
    assert found["statements_statementline", "statement_id"].target == "statements_statement"
    out = StringIO()
    with pytest.raises(CommandError, match="2 row"):
        call_command("check_references", stdout=out)
    assert (
        f"statements_statementline.statement_id -> statements_statement: 1 row(s) name no row (ids {line.pk}"
        in (out.getvalue())
    )
