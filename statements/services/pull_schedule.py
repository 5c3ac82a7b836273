"""The beat schedule of each pull biller: one django-celery-beat PeriodicTask named ``pull:<biller code>``.

The task is made from the biller's pull settings (active, pull enabled, interval). Billing admins may then
edit it in Django admin (a crontab instead of the interval, disabled for a while): the edit stays until the
biller's own pull settings change. To know whether they changed, the settings the task was last made from are
written into its description (``[pull-settings: ...]``), the one free-text field a PeriodicTask has, so that
both a biller save and ``manage.py sync_pull_schedules`` can tell without a column of their own.
"""

from __future__ import annotations

import json
import re
from typing import Any

from django.db import transaction
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from accounts.models import Biller
from billing_mgmt.audit import audit_record
from statements.models import BillerSync

PULL_TASK = "statements.pull_biller"
_MARKER = re.compile(r"\[pull-settings: ([^\]]*)\]")


def pull_task_name(biller: Biller) -> str:
    return f"pull:{biller.code}"


def pull_settings_fingerprint(biller: Biller) -> str:
    """The biller settings the schedule follows; when these change, an admin's edit of the task is reset."""
    enabled = "on" if biller.active and biller.pull_enabled else "off"
    return f"{enabled}, every {biller.pull_interval_minutes} min"


def _description(biller: Biller) -> str:
    return (
        f"Pulls {biller.name} ({biller.code}). Made from the biller's pull settings; edit it freely here: "
        f"it is reset only when those settings change. [pull-settings: {pull_settings_fingerprint(biller)}]"
    )


def _made_from(task: PeriodicTask) -> str | None:
    match = _MARKER.search(task.description or "")
    return match.group(1) if match else None


def _interval(minutes: int) -> IntervalSchedule:
    # IntervalSchedule has no unique constraint: reuse the first match rather than get_or_create.
    found = (
        IntervalSchedule.objects.filter(every=minutes, period=IntervalSchedule.MINUTES).order_by("pk").first()
    )
    return found or IntervalSchedule.objects.create(every=minutes, period=IntervalSchedule.MINUTES)


def _state(task: PeriodicTask) -> dict[str, Any]:
    return {
        "name": task.name,
        "enabled": task.enabled,
        "interval": str(task.interval) if task.interval_id else None,
        "crontab": str(task.crontab) if task.crontab_id else None,
    }


def _apply(task: PeriodicTask, biller: Biller) -> None:
    task.name = pull_task_name(biller)
    task.task = PULL_TASK
    task.kwargs = json.dumps({"biller_id": biller.pk})
    task.args = "[]"
    task.interval = _interval(biller.pull_interval_minutes)
    task.crontab = task.solar = task.clocked = None
    task.one_off = False
    task.enabled = biller.active and biller.pull_enabled
    task.description = _description(biller)


@transaction.atomic
def biller_pull_schedule_sync(*, biller: Biller, actor: Any = None) -> PeriodicTask | None:
    """Create, update or disable the biller's periodic task and link it in its BillerSync.

    A biller that was never pulled gets no task. A task whose recorded settings match the biller's is left as
    an admin may have edited it (only its name follows a new biller code). Returns the task, if any.
    """
    sync = (
        BillerSync.objects.select_for_update(of=("self",))
        .filter(biller=biller)
        .select_related("periodic_task")
        .first()
    )
    task = sync.periodic_task if sync else None
    if task is None:
        # The link may be lost (the sync row is new): a task of that name is still this biller's.
        task = PeriodicTask.objects.filter(name=pull_task_name(biller)).first()
    wanted = biller.active and biller.pull_enabled
    if task is None and not wanted:
        return None
    if sync is None:
        sync, _ = BillerSync.objects.get_or_create(biller=biller)

    before = _state(task) if task is not None else None
    if task is None:
        task = PeriodicTask()
        _apply(task, biller)
        action = "created"
    elif _made_from(task) != pull_settings_fingerprint(biller):
        _apply(task, biller)
        action = "reset"
    elif task.name != pull_task_name(biller):
        task.name = pull_task_name(biller)
        action = "renamed"
    else:
        action = ""
    if action in ("created", "reset") and wanted:
        # Load at beat's next tick, not one interval from now: django-celery-beat runs a task that has a
        # start_time and no last run at once (a newly enabled biller's data should not wait a day).
        task.start_time = timezone.now()
        task.last_run_at = None
    if action:
        task.save()
        audit_record(
            actor=actor,
            action=f"biller.pull_schedule_{action}",
            obj=biller,
            before=before,
            after=_state(task),
        )
    if sync.periodic_task_id != task.pk:
        sync.periodic_task = task
        sync.save(update_fields=["periodic_task"])
    return task
