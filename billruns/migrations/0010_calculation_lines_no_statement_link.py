"""Calculation lines lose their link to the printed statement line: the statement line names its calculation
line instead (statements 0008; the existing links are copied first), so that posting a bill no longer
rewrites every calculation line. Calculation lines carry no database foreign-key constraints (a query per
row at commit; rating writes them by the ten thousand per unit of work, in the transaction of their
segment). Calculation lines are now never updated at all, and the database refuses any UPDATE of one (0002
refused the frozen columns'); on SQLite the table is remade by these changes, which drops its triggers, and
the guard is installed again either way."""

import django.db.models.deletion
from django.db import migrations, models

from billing_mgmt.dbguards import append_only_sql

TABLE = "billruns_calculationline"
# What 0002 froze (every column but the link to the statement line).
FROZEN = [
    "id", "segment_id", "position", "kind", "component_id", "discount_id", "tax_rate_id", "description",
    "quantity", "unit", "rate", "proration_factor", "base", "amount", "included", "period_start", "period_end",
]  # fmt: skip

# UPDATE ... FROM: PostgreSQL, and SQLite since 3.33.
COPY_LINKS = """
    UPDATE statements_statementline SET calculation_line_id = cl.id
    FROM billruns_calculationline cl WHERE cl.statement_line_id = statements_statementline.id
"""
RESTORE_LINKS = """
    UPDATE billruns_calculationline SET statement_line_id = sl.id
    FROM statements_statementline sl WHERE sl.calculation_line_id = billruns_calculationline.id
"""


def _guard(schema_editor, frozen):
    for sql in append_only_sql(schema_editor.connection.vendor, TABLE, frozen):
        schema_editor.execute(sql, params=None)


def guard_every_column(apps, schema_editor):
    _guard(schema_editor, None)


def guard_frozen_columns(apps, schema_editor):
    _guard(schema_editor, FROZEN)


class Migration(migrations.Migration):
    dependencies = [
        ("billruns", "0009_segment_usage"),
        ("statements", "0008_statement_lines_print_calculation_lines"),
    ]

    operations = [
        # Backwards, last: SQLite remade the table on the way back (without its triggers).
        migrations.RunPython(migrations.RunPython.noop, guard_frozen_columns),
        migrations.RunSQL(COPY_LINKS, RESTORE_LINKS),
        migrations.RemoveIndex(
            model_name="calculationline",
            name="calc_line_statement_line",
        ),
        migrations.RemoveField(
            model_name="calculationline",
            name="statement_line",
        ),
        migrations.AlterField(
            model_name="calculationline",
            name="component",
            field=models.ForeignKey(
                blank=True,
                db_constraint=False,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to="billruns.plancomponent",
            ),
        ),
        migrations.AlterField(
            model_name="calculationline",
            name="discount",
            field=models.ForeignKey(
                blank=True,
                db_constraint=False,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to="billruns.discount",
            ),
        ),
        migrations.AlterField(
            model_name="calculationline",
            name="segment",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="lines",
                to="billruns.billsegment",
            ),
        ),
        migrations.AlterField(
            model_name="calculationline",
            name="tax_rate",
            field=models.ForeignKey(
                blank=True,
                db_constraint=False,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to="billruns.taxrate",
            ),
        ),
        migrations.RunPython(guard_every_column, guard_frozen_columns),
    ]
