"""Queues by kind of work (billing_mgmt.queues): billing, formatting and ingest apart when named."""

from __future__ import annotations

from unittest import mock

import pytest

from billing_mgmt.celery import app as celery_app
from billing_mgmt.queues import TASK_KINDS, chunk_queue, route_task
from billruns.models import Stage
from billruns.services import runs

NAMED = {"billing": "billing", "formatting": "formatting", "ingest": "ingest"}


def _queue_of(task_name: str, **options) -> str:
    """The queue Celery's own router picks for a task sent with these options."""
    routed = celery_app.amqp.router.route(options, task_name, (), {})
    return routed["queue"].name


def test_unnamed_queues_send_everything_to_the_default_queue(settings):
    settings.WORK_QUEUES = {"billing": "", "formatting": "", "ingest": ""}
    default = celery_app.conf.task_default_queue
    for name in [*TASK_KINDS, "payments.run_autopay"]:
        assert route_task(name, (), {}, {}) is None
        assert _queue_of(name) == default
    assert chunk_queue(Stage.FORMATTING) is None


@pytest.mark.parametrize(
    ("task_name", "queue"),
    [
        ("billruns.advance_run", "billing"),
        ("billruns.resume_stalled_runs", "billing"),
        ("invoicing.render_invoices", "formatting"),
        ("invoicing.build_print_batch", "formatting"),
        ("invoicing.catch_up_invoices", "formatting"),
        ("statements.pull_biller", "ingest"),
        ("statements.refresh_account", "ingest"),
    ],
)
def test_named_queues_route_each_kind_to_its_own(settings, task_name, queue):
    settings.WORK_QUEUES = NAMED
    assert _queue_of(task_name) == queue


def test_other_tasks_and_explicit_queues(settings):
    settings.WORK_QUEUES = NAMED
    default = celery_app.conf.task_default_queue
    assert _queue_of("payments.run_autopay") == default
    assert _queue_of("disputes.send_case_email") == default
    # A queue given when sending wins over the route.
    assert _queue_of("invoicing.render_invoices", queue="elsewhere") == "elsewhere"


@pytest.mark.parametrize(
    ("stage", "queue"),
    [
        (Stage.RATING, "billing"),
        (Stage.INVOICING, "billing"),
        (Stage.POSTING, "billing"),
        (Stage.FORMATTING, "formatting"),
    ],
)
def test_a_runs_chunks_go_to_the_queue_of_their_stage(settings, stage, queue):
    settings.WORK_QUEUES = NAMED
    with mock.patch("billruns.tasks.process_chunk.apply_async") as send:
        runs._dispatch_chunks([7, 8], stage)
    assert [call.args[0] for call in send.call_args_list] == [(7,), (8,)]
    assert {call.kwargs["queue"] for call in send.call_args_list} == {queue}


def test_every_routed_task_exists():
    celery_app.loader.import_default_modules()
    assert set(TASK_KINDS) <= set(celery_app.tasks)
