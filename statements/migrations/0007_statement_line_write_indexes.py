"""Statement lines keep three indexes of eight: the primary key, (statement, position) and (statement,
external id). Nothing reads lines by service identifier or service type without their statement, and the
statement's own index repeated (statement, position)'s first column; billing runs and bulk ingest write
lines by the hundred thousand, and every index is written again for each line."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('statements', '0006_statement_corrections_line_service'),
    ]

    operations = [
        migrations.AlterField(
            model_name='statementline',
            name='service_identifier',
            field=models.CharField(blank=True, help_text='Phone number, meter, device, …', max_length=100),
        ),
        migrations.AlterField(
            model_name='statementline',
            name='service_type',
            field=models.SlugField(blank=True, db_index=False, help_text='Groups charges on the invoice, e.g. mobile, broadband.', max_length=40),
        ),
        migrations.AlterField(
            model_name='statementline',
            name='statement',
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='lines', to='statements.statement'),
        ),
    ]
