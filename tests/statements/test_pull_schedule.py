"""Each pull biller's beat schedule: created, updated and disabled with the biller (also when saved in
Django admin), kept as an admin edited it until the biller's pull settings change; `sync_pull_schedules`."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.urls import reverse
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

from accounts.models import Biller
from billing_mgmt.models import AuditRecord
from statements.models import BillerSync
from statements.services import biller_pull_schedule_sync

pytestmark = pytest.mark.django_db


@pytest.fixture
def biller(biller_factory):
    return biller_factory(
        code="contoso",
        name="Contoso Energy",
        pull_enabled=True,
        pull_url="https://contoso.example.com/export/",
        pull_interval_minutes=60,
    )


def _task(biller: Biller) -> PeriodicTask:
    return PeriodicTask.objects.get(name=f"pull:{biller.code}")


def test_saving_a_pull_biller_creates_its_schedule(biller):
    task = _task(biller)
    assert task.task == "statements.pull_biller"
    assert json.loads(task.kwargs) == {"biller_id": biller.pk}
    assert (task.interval.every, task.interval.period) == (60, IntervalSchedule.MINUTES)
    assert task.crontab is None and task.enabled
    # A start time and no last run: beat loads the new biller at its next tick, not an interval later.
    assert task.start_time is not None and task.last_run_at is None
    assert BillerSync.objects.get(biller=biller).periodic_task == task
    assert AuditRecord.objects.filter(
        action="biller.pull_schedule_created", object_id=str(biller.pk)
    ).exists()


def test_a_biller_that_is_not_pulled_gets_no_schedule(biller_factory):
    biller = biller_factory(code="pusher")
    assert biller_pull_schedule_sync(biller=biller) is None
    assert not PeriodicTask.objects.filter(name="pull:pusher").exists()
    assert not BillerSync.objects.filter(biller=biller).exists()


def test_the_schedule_follows_the_interval_and_is_disabled_with_the_pull(biller):
    biller.pull_interval_minutes = 15
    biller.save()
    task = _task(biller)
    assert task.interval.every == 15 and task.enabled

    biller.pull_enabled = False
    biller.save()
    task.refresh_from_db()
    assert not task.enabled
    assert PeriodicTask.objects.filter(name__startswith="pull:").count() == 1

    biller.pull_enabled = True
    biller.save()
    task.refresh_from_db()
    assert task.enabled

    biller.active = False
    biller.save()
    task.refresh_from_db()
    assert not task.enabled


def test_an_admin_edit_of_the_task_survives_an_unrelated_biller_save(biller):
    task = _task(biller)
    crontab = CrontabSchedule.objects.create(minute="0", hour="3")
    task.interval = None
    task.crontab = crontab
    task.save()

    biller.name = "Contoso Energy Ltd"
    biller.contact_email = "ops@contoso.example.com"
    biller.save()
    task.refresh_from_db()
    assert (task.crontab, task.interval) == (crontab, None)

    # A change of the biller's pull settings resets the task to them.
    biller.pull_interval_minutes = 30
    biller.save()
    task.refresh_from_db()
    assert (task.crontab, task.interval.every) == (None, 30)
    assert AuditRecord.objects.filter(action="biller.pull_schedule_reset").count() == 1


def test_an_admin_pause_survives_an_unrelated_save_too(biller):
    task = _task(biller)
    task.enabled = False
    task.save()
    biller.contact_email = "new@contoso.example.com"
    biller.save()
    task.refresh_from_db()
    assert not task.enabled


def test_a_new_code_renames_the_task(biller):
    task = _task(biller)
    biller.code = "contoso-energy"
    biller.save()
    task.refresh_from_db()
    assert task.name == "pull:contoso-energy"
    assert PeriodicTask.objects.filter(name__startswith="pull:").count() == 1


def test_the_biller_admin_save_syncs_the_schedule(client, billing_admin_user, biller):
    client.force_login(billing_admin_user)
    url = reverse("admin:accounts_biller_change", args=[biller.pk])
    page = client.get(url)
    assert page.status_code == 200
    data = {
        name: value
        for name, value in page.context["adminform"].form.initial.items()
        if value is not None and not isinstance(value, bool)
    }
    data.update({"pull_enabled": "on", "active": "on", "pull_interval_minutes": "45"})
    for formset in page.context["inline_admin_formsets"]:
        management = formset.formset.management_form
        data.update({management.add_prefix(k): v for k, v in management.initial.items()})

    response = client.post(url, data)

    assert response.status_code == 302, response.context["adminform"].form.errors
    assert _task(biller).interval.every == 45


def test_the_command_recreates_missing_schedules_and_keeps_edited_ones(biller, biller_factory):
    other = biller_factory(
        code="globex",
        pull_enabled=True,
        pull_kind="file_drop",
        drop_folder="/tmp/globex",
        pull_interval_minutes=5,
    )
    _task(other).delete()  # an admin deleted it
    assert BillerSync.objects.get(biller=other).periodic_task is None
    task = _task(biller)
    task.enabled = False
    task.save()
    out = StringIO()

    call_command("sync_pull_schedules", stdout=out)

    assert _task(other).interval.every == 5
    assert BillerSync.objects.get(biller=other).periodic_task == _task(other)
    assert not _task(biller).enabled
    assert "globex: pull:globex enabled, every 5 minutes" in out.getvalue()
    assert "contoso: pull:contoso disabled" in out.getvalue()
