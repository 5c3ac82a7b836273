"""Calculation lines explain billed amounts: the database refuses to delete them or change what they say (only
the link to the printed statement line is set when the bill is made)."""

from django.db import migrations

from billing_mgmt.dbguards import append_only_operation

FROZEN = [
    "id", "segment_id", "position", "kind", "component_id", "discount_id", "tax_rate_id", "description",
    "quantity", "unit", "rate", "proration_factor", "base", "amount", "included", "period_start", "period_end",
]  # fmt: skip


class Migration(migrations.Migration):
    dependencies = [("billruns", "0001_initial")]

    operations = [append_only_operation("billruns_calculationline", FROZEN)]
