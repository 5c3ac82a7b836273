"""Statement lines name the calculation line they print (StatementLine.calculation_line_id); before billruns
0010 the calculation line pointed at its statement line. The migration moves the links either way, and
afterwards the database refuses any change to a calculation line."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import IntegrityError, connection, transaction
from django.db.migrations.executor import MigrationExecutor

from billruns.models import CalculationLine
from billruns.services import bill_create
from tests.billruns import builders as b
from tests.factories import AccountFactory

BEFORE = [("billruns", "0009_segment_usage"), ("statements", "0007_statement_line_write_indexes")]


@pytest.mark.django_db(transaction=True)
def test_the_migration_moves_the_links_both_ways():
    plan = b.plan()
    b.recurring(plan, "30.00")
    b.one_time(plan, "15.00")
    sub = b.subscription(AccountFactory(), plan, dt.date(2026, 6, 10))
    statement = bill_create(account=sub.account, bill_date=dt.date(2026, 6, 10)).statement
    printed = dict(statement.lines.values_list("pk", "calculation_line_id"))
    assert len(printed) == 2 and None not in printed.values()
    executor = MigrationExecutor(connection)
    try:
        executor.migrate(BEFORE)
        with connection.cursor() as cursor:
            cursor.execute("SELECT statement_line_id, id FROM billruns_calculationline ORDER BY id")
            assert dict(cursor.fetchall()) == printed
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())
        assert dict(statement.lines.values_list("pk", "calculation_line_id")) == printed
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())
    # The guard is in place again and now covers every column.
    line = CalculationLine.objects.filter(segment__subscription=sub).first()
    for change in ({"description": "changed"}, {"segment_id": line.segment_id + 1}):
        with pytest.raises(IntegrityError), transaction.atomic():
            CalculationLine.objects.filter(pk=line.pk).update(**change)
