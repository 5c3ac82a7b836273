"""The billing frequencies of the billing profile (same codes) and the two billing term schemes, so that a new
installation can create subscriptions at once. Admins may add, rename or deactivate them."""

from django.db import migrations

FREQUENCIES = [
    ("monthly", "Monthly", 1),
    ("bimonthly", "Every two months", 2),
    ("quarterly", "Quarterly", 3),
    ("semiannual", "Semi-annual", 6),
    ("annual", "Annual", 12),
]
SCHEMES = [
    ("standard", "Standard post-paid", "normal"),
    ("prepaid", "Prepaid", "prepaid"),
]


def create(apps, schema_editor):
    BillingFrequency = apps.get_model("billruns", "BillingFrequency")
    BillingTermScheme = apps.get_model("billruns", "BillingTermScheme")
    for code, name, months in FREQUENCIES:
        BillingFrequency.objects.get_or_create(code=code, defaults={"name": name, "months": months})
    for code, name, kind in SCHEMES:
        BillingTermScheme.objects.get_or_create(code=code, defaults={"name": name, "kind": kind})


class Migration(migrations.Migration):
    dependencies = [("billruns", "0001_initial")]
    operations = [migrations.RunPython(create, migrations.RunPython.noop)]
