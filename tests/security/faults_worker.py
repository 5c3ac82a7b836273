"""A Celery app for the Redis-down test: the product's app, with each chunk of Assembling & Posting made
slower (``FAULTS_POSTING_DELAY`` seconds inside its work transaction), so that the test can stop Redis while
chunks are being posted and others wait in the queue. Started as ``celery -A tests.security.faults_worker``.
"""

from __future__ import annotations

import os
import time

from billing_mgmt.celery import app  # noqa: F401  (the app Celery loads from this module)


def _install() -> None:
    import django

    django.setup()
    from billruns.models import RunType, Stage
    from billruns.services import run_work

    delay = float(os.environ.get("FAULTS_POSTING_DELAY", "0.4"))
    key = (RunType.NORMAL, Stage.POSTING)
    original = run_work.PROCESSORS[key]

    def slow_posting(run, unit_ids):
        time.sleep(delay)
        return original(run, unit_ids)

    run_work.PROCESSORS[key] = slow_posting


_install()
