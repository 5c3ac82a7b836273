"""A private synthetic customer base for the benchmark smoke tests: a database of the test's own (never the
one DATABASE_URL names, nor pytest-django's), migrated and filled, dropped at the end."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from django.conf import settings
from django.core.management import call_command
from django.utils import timezone

from billruns.bench import databases
from billruns.bench.customers import BaseSpec, build_customer_base


@contextmanager
def private_base(django_db_blocker, *, prefix: str, accounts: int, seed: int = 7) -> Iterator[str]:
    """Yield the name of a new database holding ``accounts`` accounts billed from the first of this month."""
    assert settings.DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql", (
        "The benchmark runs on PostgreSQL: set DATABASE_URL=postgres://..."
    )
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with django_db_blocker.unblock():
        databases.create(name)
        try:
            with databases.pointed_at(name):
                call_command("migrate", interactive=False, verbosity=0)
                first = timezone.localdate().replace(day=1)
                build_customer_base(BaseSpec(accounts=accounts, seed=seed, months=1, bill_as_of=first))
            yield name
        finally:
            databases.drop(name)
