"""Statement lines say which engine calculation line they print (the engine no longer rewrites the calculation
line to point at its statement line; billruns 0010 copies the existing links), and statement lines and usage
summaries carry no database foreign-key constraint: PostgreSQL checks one with a query per row at commit,
and a billing run writes them by the ten thousand per unit of work in the transaction of their statement."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0007_billingsuspension"),
        ("statements", "0007_statement_line_write_indexes"),
    ]

    operations = [
        migrations.AddField(
            model_name="statementline",
            name="calculation_line_id",
            field=models.BigIntegerField(
                blank=True,
                editable=False,
                help_text="Bills the engine made: the id of the calculation line this line prints. Empty for a biller's line.",
                null=True,
            ),
        ),
        migrations.AlterField(
            model_name="statementline",
            name="account",
            field=models.ForeignKey(
                blank=True,
                db_constraint=False,
                db_index=False,
                help_text="In a hierarchy: the account whose service this is (a non-paying child's lines are on its paying parent's statement). Empty: the statement's own account.",
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to="accounts.account",
            ),
        ),
        migrations.AlterField(
            model_name="statementline",
            name="statement",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="lines",
                to="statements.statement",
            ),
        ),
        migrations.AlterField(
            model_name="usagesummary",
            name="statement",
            field=models.ForeignKey(
                db_constraint=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="usage_summaries",
                to="statements.statement",
            ),
        ),
    ]
