"""Create the statement number series (and its PostgreSQL sequence) ahead of use.

Created lazily, the series row and sequence would be created by the first ingest transaction; a long bulk
request (thousands of statements in one transaction under an Idempotency-Key) would then hold them
uncommitted and every other biller's first statement would wait for it.
"""

from django.db import migrations

CODE = "statement"


def create_series(apps, schema_editor):
    NumberSeries = apps.get_model("billing_mgmt", "NumberSeries")
    series, _ = NumberSeries.objects.get_or_create(
        code=CODE, defaults={"name": "Statements", "prefix": "ST-", "padding": 8, "gapless": False}
    )
    if schema_editor.connection.vendor == "postgresql":
        # The name and start follow billing_mgmt.numbering._sequence_name / _next_from_sequence.
        schema_editor.execute(
            f'CREATE SEQUENCE IF NOT EXISTS "number_series_{int(series.pk)}" START WITH {int(series.next_value)}'
        )


class Migration(migrations.Migration):
    dependencies = [
        ("statements", "0004_statements_usage_snapshots_sync"),
        ("billing_mgmt", "0003_idempotency_record"),
    ]

    operations = [migrations.RunPython(create_series, migrations.RunPython.noop)]
