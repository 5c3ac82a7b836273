"""Production settings: `manage.py check --deploy` passes with production variables and refuses bad ones.

Each check runs in a subprocess, because settings are read once from the environment at start.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
# Only these come from the test's own environment: anything else (the developer's DATABASE_URL, a test's
# DJANGO_ALLOW_ASYNC_UNSAFE) would leak into what is checked.
KEPT_VARIABLES = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT")


def _production_env(**overrides: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in KEPT_VARIABLES}
    env.update(
        DEBUG="false",
        SECRET_KEY=secrets.token_urlsafe(50),
        ALLOWED_HOSTS="billing.example.com",
        DATABASE_URL="postgres://billing:secret@db.internal:5432/billing_mgmt",
        CELERY_BROKER_URL="redis://redis.internal:6379/0",
        CACHE_URL="redis://redis.internal:6379/1",
        EMAIL_URL="smtp+tls://mailer:secret@smtp.example.com:587",
    )
    for key, value in overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def _check_deploy(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_passes_with_production_variables():
    result = _check_deploy(_production_env())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_settings_refuse_to_start_without_secret_key_when_debug_is_off():
    result = _check_deploy(_production_env(SECRET_KEY=None))
    assert result.returncode != 0
    assert "SECRET_KEY must be set when DEBUG is off." in result.stderr


def test_check_deploy_fails_on_a_weak_secret_key():
    result = _check_deploy(_production_env(SECRET_KEY="short"))
    assert result.returncode != 0
    assert "security.W009" in result.stderr


def test_check_deploy_fails_on_a_per_process_cache():
    """API rate limits count in the cache: a per-process cache would give each gunicorn process its own."""
    result = _check_deploy(_production_env(CACHE_URL=None))
    assert result.returncode != 0
    assert "billing_mgmt.W001" in result.stderr


_SECURITY_SETTINGS = (
    "SESSION_COOKIE_SECURE", "SESSION_COOKIE_HTTPONLY", "SESSION_COOKIE_SAMESITE", "CSRF_COOKIE_SECURE",
    "CSRF_COOKIE_SAMESITE", "SECURE_SSL_REDIRECT", "SECURE_HSTS_SECONDS", "X_FRAME_OPTIONS",
    "SECURE_CONTENT_TYPE_NOSNIFF", "SECURE_REFERRER_POLICY", "SECURE_CROSS_ORIGIN_OPENER_POLICY",
    "STAFF_IDLE_TIMEOUT", "AXES_FAILURE_LIMIT", "AXES_RESET_ON_SUCCESS", "AXES_LOCKOUT_PARAMETERS",
)  # fmt: skip


def _production_settings(**overrides: str | None) -> dict:
    code = (
        "import json, django; django.setup(); from django.conf import settings as s; "
        f"names = {list(_SECURITY_SETTINGS)!r}; "
        "print(json.dumps({**{n: getattr(s, n) for n in names}, 'CACHE': s.CACHES['default']['BACKEND'], "
        "'BACKENDS': s.AUTHENTICATION_BACKENDS, 'MIDDLEWARE': s.MIDDLEWARE, "
        "'CSP': {k: [str(v) for v in vs] for k, vs in s.CONTENT_SECURITY_POLICY['DIRECTIVES'].items()}}))"
    )
    env = _production_env(**overrides)
    env["DJANGO_SETTINGS_MODULE"] = "billing_mgmt.settings"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_production_settings_harden_cookies_headers_and_logins():
    values = _production_settings()
    assert values["SESSION_COOKIE_SECURE"] is True and values["CSRF_COOKIE_SECURE"] is True
    assert values["SESSION_COOKIE_HTTPONLY"] is True
    assert values["SESSION_COOKIE_SAMESITE"] == values["CSRF_COOKIE_SAMESITE"] == "Lax"
    assert values["SECURE_SSL_REDIRECT"] is True and values["SECURE_HSTS_SECONDS"] >= 31536000
    assert values["X_FRAME_OPTIONS"] == "DENY" and values["SECURE_CONTENT_TYPE_NOSNIFF"] is True
    assert values["SECURE_REFERRER_POLICY"] == "same-origin"
    assert values["SECURE_CROSS_ORIGIN_OPENER_POLICY"] == "same-origin"
    assert values["STAFF_IDLE_TIMEOUT"] == 30 * 60
    assert values["AXES_FAILURE_LIMIT"] == 5 and values["AXES_RESET_ON_SUCCESS"] is True
    assert values["AXES_LOCKOUT_PARAMETERS"] == [["username", "ip_address"]]
    assert values["BACKENDS"][0] == "axes.backends.AxesStandaloneBackend"
    assert values["MIDDLEWARE"][-1] == "axes.middleware.AxesMiddleware"
    assert values["CACHE"] == "django.core.cache.backends.redis.RedisCache"
    csp = values["CSP"]
    assert csp["default-src"] == ["'self'"] and "'unsafe-inline'" not in csp["script-src"]
    assert csp["frame-ancestors"] == ["'none'"] and csp["object-src"] == ["'none'"]


def test_compose_file_describes_the_production_like_stack():
    """Docker is not available in CI: prove at least that the stack is wired as docs/deployment.md says."""
    text = (ROOT / "docker-compose.yml").read_text()
    compose = yaml.safe_load(text)
    # Compose interpolates ${VAR} everywhere (the inline Dockerfile too); a shell's $ must be written $$.
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    assert re.findall(r"\$(?![{$])", body.replace("$$", "")) == []
    services = compose["services"]
    workers = {"worker", "worker-formatting", "worker-ingest"}
    assert set(services) == {"postgres", "redis", "migrate", "web", "beat"} | workers
    assert {name for name, s in services.items() if "healthcheck" in s} >= {"postgres", "redis", "web"}
    assert services["postgres"]["image"].startswith("postgres:16")
    assert services["redis"]["image"].startswith("redis:7")
    assert "gunicorn billing_mgmt.wsgi" in services["web"]["command"]
    for name in workers:
        assert "worker" in services[name]["command"] and "container_name" not in services[name]
    # Billing, formatting and ingest each on their own queue (docs/scaling.md); the default queue is served.
    queues = {name: re.search(r"-Q (\S+)", services[name]["command"]).group(1) for name in workers}
    assert queues == {
        "worker": "billing",
        "worker-formatting": "formatting",
        "worker-ingest": "ingest,celery",
    }
    environment = services["worker"]["environment"]
    assert (
        environment["CELERY_BILLING_QUEUE"],
        environment["CELERY_FORMATTING_QUEUE"],
        environment["CELERY_INGEST_QUEUE"],
    ) == ("billing", "formatting", "ingest")
    assert "django_celery_beat.schedulers:DatabaseScheduler" in services["beat"]["command"]
    assert services["web"]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
    dockerfile = services["web"]["build"]["dockerfile_inline"]
    assert "\nFROM python:3.11-slim\n" in dockerfile
    assert "uv sync --frozen --no-dev" in dockerfile and "collectstatic" in dockerfile
    for name in ("web", "beat", "migrate", *workers):
        environment = services[name]["environment"]
        assert {
            "DATABASE_URL",
            "CELERY_BROKER_URL",
            "CACHE_URL",
            "SECRET_KEY",
            "DEBUG",
            "ALLOWED_HOSTS",
        } <= set(environment)
        assert environment["DEBUG"] == "false"
