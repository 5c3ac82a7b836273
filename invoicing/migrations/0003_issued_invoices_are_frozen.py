"""An issued invoice is a legal document: the database refuses to delete it, to change what was issued
(number, series, bill, amounts, dates, language), to replace a document once it is stored, or to take a
rendered invoice back (billing_mgmt.dbguards)."""

from django.db import migrations

from billing_mgmt.dbguards import append_only_operation

FROZEN = [
    "id", "statement_id", "account_id", "series_id", "number", "kind", "corrects_id", "format", "language",
    "locale", "invoice_date", "currency", "total_due", "issued_at", "issued_by",
]  # fmt: skip
SET_ONCE = ["pdf", "html", "xml", "pdf_sha256", "html_sha256", "xml_sha256"]
RENDERED_STAYS = "OLD.\"status\" = 'rendered' AND NEW.\"status\" <> 'rendered'"


class Migration(migrations.Migration):
    dependencies = [("invoicing", "0002_invoices")]

    operations = [append_only_operation("invoicing_invoice", FROZEN, SET_ONCE, RENDERED_STAYS)]
