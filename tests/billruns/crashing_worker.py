"""A Celery app for the real-worker tests whose billing-run work kills its own process on one account.

Started as ``celery -A tests.billruns.crashing_worker worker``: the product's app, with the rating
processor wrapped so that a chunk holding account ``BILLRUN_TEST_CRASH_ACCOUNT`` ends its process at once
(``os._exit``: no exception, no cleanup, as a segfault or the kernel's OOM killer would), every time.
"""

from __future__ import annotations

import os

from billing_mgmt.celery import app  # noqa: F401  (the app Celery loads from this module)


def _install() -> None:
    import django

    django.setup()
    from billruns.models import RunType, Stage
    from billruns.services import run_work

    poison = int(os.environ["BILLRUN_TEST_CRASH_ACCOUNT"])
    key = (RunType.NORMAL, Stage.RATING)
    original = run_work.PROCESSORS[key]

    def crash_on_poison(run, unit_ids):
        if poison in unit_ids:
            os._exit(17)
        return original(run, unit_ids)

    run_work.PROCESSORS[key] = crash_on_poison


_install()
