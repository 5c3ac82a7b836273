"""Bring every biller's pull schedule (django-celery-beat task ``pull:<code>``) in line with its settings."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from accounts.models import Biller
from statements.services import biller_pull_schedule_sync


class Command(BaseCommand):
    help = (
        "Create, update or disable the periodic task of every biller from its pull settings. A task an admin "
        "edited is kept unless the biller's pull settings changed since it was made."
    )

    def handle(self, *args, **options):
        for biller in Biller.objects.order_by("code"):
            task = biller_pull_schedule_sync(biller=biller, actor="manage.py sync_pull_schedules")
            if task is None:
                continue
            schedule = task.crontab or task.interval or task.solar or task.clocked
            state = "enabled" if task.enabled else "disabled"
            self.stdout.write(f"{biller.code}: {task.name} {state}, {schedule}")
