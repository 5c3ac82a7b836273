"""Case history is append-only in the database (what happened and who did it never change; the e-mail
columns are set once it is sent), and the catalog starts with the service processes of source 002."""

from django.db import migrations

from billing_mgmt.dbguards import append_only_operation
from disputes.catalog import ensure_default_processes

FROZEN = [
    "id", "case_id", "kind", "from_status", "to_status", "text", "public", "actor_id", "actor_label",
    "created_at",
]  # fmt: skip

def seed(apps, schema_editor):
    ensure_default_processes(apps.get_model("disputes", "ServiceProcess"), apps.get_model("payments", "AdjustmentReason"))


class Migration(migrations.Migration):
    dependencies = [("disputes", "0001_initial"), ("payments", "0004_autopay")]

    operations = [
        append_only_operation("disputes_caseevent", FROZEN),
        migrations.RunPython(seed, migrations.RunPython.noop),
    ]
