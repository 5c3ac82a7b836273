"""Worker pool processes tune Python's garbage collector when they start (billing_mgmt.celery)."""

from __future__ import annotations

import gc

from celery.signals import worker_process_init

from billing_mgmt.celery import WORKER_GC_THRESHOLDS, _tune_gc


def test_a_pool_process_freezes_what_it_imported_and_collects_less_often():
    before = gc.get_threshold()
    assert _tune_gc in [receiver() for _, receiver in worker_process_init.receivers]
    try:
        _tune_gc()
        assert gc.get_threshold() == WORKER_GC_THRESHOLDS
        assert gc.get_freeze_count() > 10_000  # Django and the app, no longer walked by collections
        assert WORKER_GC_THRESHOLDS[0] > before[0]
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
