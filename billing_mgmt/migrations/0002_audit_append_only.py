from django.db import migrations

from billing_mgmt.dbguards import append_only_operation


class Migration(migrations.Migration):
    dependencies = [("billing_mgmt", "0001_initial")]

    operations = [append_only_operation("billing_mgmt_auditrecord")]
