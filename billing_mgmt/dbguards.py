"""Database-enforced immutability, used by migrations.

The ledger and the audit trail must hold even against code that bypasses the services (a shell, a bad
migration, raw SQL): triggers make the database itself refuse DELETE, and UPDATE of the columns that must
never change. Both PostgreSQL (production, tests) and SQLite (the embedded default) are covered.
TRUNCATE is left to the table owner on purpose (test isolation uses it).
"""

from __future__ import annotations

PG_FUNCTION = """
CREATE OR REPLACE FUNCTION billing_reject_change() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION '% on %: the table is append-only; post a correcting row instead', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'integrity_constraint_violation';
END;
$$ LANGUAGE plpgsql;
"""


def _changes(frozen: list[str], set_once: list[str], also_when: str, *, differs: str) -> str:
    """The UPDATE condition the trigger refuses: a frozen column changed, a set-once column changed after it
    was set (from empty), or ``also_when`` (portable SQL over OLD and NEW)."""
    parts = [f'OLD."{c}" {differs} NEW."{c}"' for c in frozen]
    parts += [f'(OLD."{c}" <> \'\' AND OLD."{c}" {differs} NEW."{c}")' for c in set_once]
    if also_when:
        parts.append(f"({also_when})")
    return " OR ".join(parts)


def _pg_statements(
    table: str, frozen: list[str] | None, set_once: list[str] = (), also_when: str = ""
) -> list[str]:
    statements = [
        PG_FUNCTION,
        f'DROP TRIGGER IF EXISTS "{table}_no_delete" ON "{table}"',
        f'CREATE TRIGGER "{table}_no_delete" BEFORE DELETE ON "{table}" '
        f"FOR EACH ROW EXECUTE FUNCTION billing_reject_change()",
        f'DROP TRIGGER IF EXISTS "{table}_no_update" ON "{table}"',
    ]
    if frozen is None:
        statements.append(
            f'CREATE TRIGGER "{table}_no_update" BEFORE UPDATE ON "{table}" '
            f"FOR EACH ROW EXECUTE FUNCTION billing_reject_change()"
        )
    else:
        condition = _changes(frozen, list(set_once), also_when, differs="IS DISTINCT FROM")
        statements.append(
            f'CREATE TRIGGER "{table}_no_update" BEFORE UPDATE ON "{table}" '
            f"FOR EACH ROW WHEN ({condition}) EXECUTE FUNCTION billing_reject_change()"
        )
    return statements


def _sqlite_statements(
    table: str, frozen: list[str] | None, set_once: list[str] = (), also_when: str = ""
) -> list[str]:
    message = f"the table {table} is append-only; post a correcting row instead"
    statements = [
        f'DROP TRIGGER IF EXISTS "{table}_no_delete"',
        f'CREATE TRIGGER "{table}_no_delete" BEFORE DELETE ON "{table}" '
        f"BEGIN SELECT RAISE(ABORT, '{message}'); END",
        f'DROP TRIGGER IF EXISTS "{table}_no_update"',
    ]
    if frozen is None:
        statements.append(
            f'CREATE TRIGGER "{table}_no_update" BEFORE UPDATE ON "{table}" '
            f"BEGIN SELECT RAISE(ABORT, '{message}'); END"
        )
    else:
        condition = _changes(frozen, list(set_once), also_when, differs="IS NOT")
        statements.append(
            f'CREATE TRIGGER "{table}_no_update" BEFORE UPDATE ON "{table}" '
            f"WHEN {condition} BEGIN SELECT RAISE(ABORT, '{message}'); END"
        )
    return statements


def append_only_sql(
    vendor: str, table: str, frozen: list[str] | None = None, set_once: list[str] = (), also_when: str = ""
) -> list[str]:
    """SQL that forbids DELETE on ``table`` and UPDATE of ``frozen`` columns (of every column if None), of
    ``set_once`` text columns once they are not empty, and any UPDATE for which ``also_when`` holds."""
    if vendor == "postgresql":
        return _pg_statements(table, frozen, set_once, also_when)
    if vendor == "sqlite":
        return _sqlite_statements(table, frozen, set_once, also_when)
    raise NotImplementedError(f"No append-only guard for the {vendor} database.")


def drop_append_only_sql(vendor: str, table: str) -> list[str]:
    if vendor == "postgresql":
        return [
            f'DROP TRIGGER IF EXISTS "{t}" ON "{table}"' for t in (f"{table}_no_delete", f"{table}_no_update")
        ]
    return [f'DROP TRIGGER IF EXISTS "{t}"' for t in (f"{table}_no_delete", f"{table}_no_update")]


def append_only_operation(
    table: str, frozen: list[str] | None = None, set_once: list[str] = (), also_when: str = ""
):
    """A migration operation installing the guard on whichever database the migration runs on."""
    from django.db import migrations

    def forwards(apps, schema_editor):
        for sql in append_only_sql(schema_editor.connection.vendor, table, frozen, set_once, also_when):
            schema_editor.execute(sql, params=None)

    def backwards(apps, schema_editor):
        for sql in drop_append_only_sql(schema_editor.connection.vendor, table):
            schema_editor.execute(sql, params=None)

    return migrations.RunPython(forwards, backwards)
