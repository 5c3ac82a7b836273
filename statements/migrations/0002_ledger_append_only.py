from django.db import migrations

from billing_mgmt.dbguards import append_only_operation

FROZEN = [
    "id", "account_id", "kind", "balance_type", "amount", "currency", "effective_date", "posted_at",
    "biller_id", "external_id", "idempotency_key", "corrects_id", "description", "created_by_id",
]  # fmt: skip


class Migration(migrations.Migration):
    dependencies = [("statements", "0001_initial")]

    operations = [append_only_operation("statements_financialtransaction", FROZEN)]
