"""The audit trail refuses TRUNCATE too (migration 0002 refuses UPDATE and DELETE, row by row; a TRUNCATE
fires no row trigger). PostgreSQL only: SQLite has no TRUNCATE.

The one way past it is deliberate: a session that sets ``billing_mgmt.allow_truncate`` to ``on`` (the test
suite does, for the flush that isolates transactional tests: tests/conftest.py). The application never sets
it, so no code path of the product can empty the table.
"""

from django.db import migrations

FUNCTION = """
CREATE OR REPLACE FUNCTION billing_reject_truncate() RETURNS trigger AS $$
BEGIN
    IF coalesce(current_setting('billing_mgmt.allow_truncate', true), '') = 'on' THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION 'TRUNCATE on %: the table is append-only', TG_TABLE_NAME
        USING ERRCODE = 'integrity_constraint_violation';
END;
$$ LANGUAGE plpgsql;
"""
TABLE = "billing_mgmt_auditrecord"
TRIGGER = f"{TABLE}_no_truncate"


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(FUNCTION, params=None)
    schema_editor.execute(f'DROP TRIGGER IF EXISTS "{TRIGGER}" ON "{TABLE}"')
    schema_editor.execute(
        f'CREATE TRIGGER "{TRIGGER}" BEFORE TRUNCATE ON "{TABLE}" '
        "FOR EACH STATEMENT EXECUTE FUNCTION billing_reject_truncate()"
    )


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(f'DROP TRIGGER IF EXISTS "{TRIGGER}" ON "{TABLE}"')


class Migration(migrations.Migration):
    dependencies = [("billing_mgmt", "0003_idempotency_record")]

    operations = [migrations.RunPython(forwards, backwards)]
