"""The benchmarks' built database (the template every measurement clones) and the facts a report carries.

``build_template`` drops and recreates the template database, migrates it, builds the synthetic customer base
(``customers.build_customer_base``) and then any extras (``manage.py bench`` adds an account with five years
of history for the CSR pages). With ``reuse`` it keeps a template built from the same spec, extras, builder
code and migrations (a fingerprint in the database's comment says what it holds).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import celery
import django
from django.conf import settings
from django.core.management import call_command
from django.db.migrations.loader import MigrationLoader

from . import databases
from .customers import BaseSpec, BuiltBase, build_customer_base

# name -> (the module whose code it depends on, the builder run in the template after the base; it returns
# what the measurements need to know, as JSON-able values)
Extras = dict[str, tuple[ModuleType, Callable[[], dict]]]


def fingerprint(spec: BaseSpec, extras: Extras | None = None, *, kind: str = "bench_billing") -> str:
    """What a built template depends on: the spec, the builders' code and the migrations."""
    from . import customers

    loader = MigrationLoader(None, ignore_no_migrations=True)
    digest = hashlib.sha256(Path(customers.__file__).read_bytes())
    for name, (module, _) in sorted((extras or {}).items()):
        digest.update(name.encode() + Path(module.__file__).read_bytes())
    digest.update(",".join(sorted(f"{a}.{n}" for a, n in loader.disk_migrations)).encode())
    names = ",".join(sorted(extras or {}))
    return f"{kind}:{spec.describe()};extras={names};code={digest.hexdigest()[:16]}"


def build_template(
    spec: BaseSpec,
    template: str,
    *,
    reuse: bool,
    say: Callable[[str], None],
    extras: Extras | None = None,
    kind: str = "bench_billing",
) -> tuple[BuiltBase, dict[str, dict]]:
    """The built base and each extra's result, from a reused template or a new build."""
    mark = fingerprint(spec, extras, kind=kind)
    if reuse and databases.exists(template):
        comment = databases.comment_of(template)
        if comment.startswith(mark + ";built="):
            say(f"Reusing {template} ({spec.describe()}).")
            stored = json.loads(comment.split(";built=", 1)[1])
            return BuiltBase(**stored["base"]), stored["extras"]
    say(f"Building {template}: {spec.describe()}...")
    started = time.perf_counter()
    databases.create(template)
    made: dict[str, dict] = {}
    with databases.pointed_at(template):
        call_command("migrate", interactive=False, verbosity=0)
        migrated = time.perf_counter() - started
        built = build_customer_base(spec)
        for name, (_, builder) in (extras or {}).items():
            began = time.perf_counter()
            made[name] = builder()
            say(f"  built {name} in {time.perf_counter() - began:.1f}s")
    databases.set_comment(template, f"{mark};built={json.dumps({'base': built.as_dict(), 'extras': made})}")
    say(
        f"  migrated in {migrated:.1f}s, built in {built.seconds:.1f}s: {built.accounts:,} accounts "
        f"({built.children:,} non-paying children, {built.bill_units:,} bill units), "
        f"{built.subscriptions:,} subscriptions, {built.usage_records:,} usage records"
    )
    return built, made


def code_facts() -> dict:
    """The commit measured, and the files changed since (the figures are for this code)."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", *args], cwd=settings.BASE_DIR, capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout if done.returncode == 0 else None

    commit = git("rev-parse", "--short", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no") or ""
    return {
        "commit": commit.strip() if commit else None,
        "modified": [line[3:] for line in status.splitlines() if line.strip()],
    }


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def memory_mb() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    except OSError:
        pass
    return None


def machine_facts(broker_url: str) -> dict:
    from .workers import redis_version

    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model(),
        "memory_mb": memory_mb(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "django": django.get_version(),
        "celery": celery.__version__,
        "postgresql": databases.server_facts(),
        "redis": redis_version(broker_url),
    }
