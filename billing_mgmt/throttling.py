"""Rate limits: API requests per client, and the client address that login throttling (django-axes) counts.

``ClientRateThrottle`` counts each client's requests in fixed windows in the default cache (Redis in
production, so that every gunicorn process shares one count): a biller's API key, a logged-in user, or an
anonymous address, each at its own rate from ``settings.API_THROTTLE_RATES`` ("6000/min"). Over the rate the
API answers 429 with ``Retry-After`` (the seconds left in the window). A fixed window costs one cache
increment per request (DRF's sliding-window throttles rewrite a list of every request's time); it lets a
client send up to twice its rate across a window boundary, which is fine for stopping a runaway client.
"""

from __future__ import annotations

import time

from django.conf import settings
from django.core.cache import cache
from rest_framework.throttling import BaseThrottle

_PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_rate(rate: str) -> tuple[int, int]:
    """'6000/min' -> (6000, 60): requests allowed and the window in seconds."""
    count, _, period = rate.partition("/")
    return int(count), _PERIODS[period.strip()[:1].lower()]


def client_ip(request) -> str:
    """The client's address: REMOTE_ADDR, or, behind ``TRUSTED_PROXY_COUNT`` proxies, the address the
    outermost trusted proxy saw (the entry that many places from the right of X-Forwarded-For; entries
    further left are the client's own claims and are ignored)."""
    remote = request.META.get("REMOTE_ADDR", "")
    proxies = getattr(settings, "TRUSTED_PROXY_COUNT", 0)
    if proxies <= 0:
        return remote
    forwarded = [
        part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()
    ]
    if len(forwarded) < proxies:
        return remote
    return forwarded[-proxies]


def _now() -> float:
    return time.time()


class ClientRateThrottle(BaseThrottle):
    def _scope_and_ident(self, request) -> tuple[str, str]:
        user = request.user
        if getattr(user, "is_api_client", False):
            return "biller", f"key-{user.key.pk}"
        if user is not None and user.is_authenticated:
            return "user", f"user-{user.pk}"
        return "anon", f"ip-{client_ip(request)}"

    def allow_request(self, request, view) -> bool:
        scope, ident = self._scope_and_ident(request)
        rate = settings.API_THROTTLE_RATES.get(scope)
        if not rate:
            return True
        limit, window = parse_rate(rate)
        now = _now()
        start = int(now // window) * window
        key = f"throttle:{scope}:{ident}:{window}:{start}"
        cache.add(key, 0, timeout=window + 1)
        try:
            count = cache.incr(key)
        except ValueError:  # the key expired between add and incr: this request opens the window
            cache.set(key, 1, timeout=window + 1)
            count = 1
        self._wait = start + window - now
        return count <= limit

    def wait(self) -> float:
        return max(1.0, getattr(self, "_wait", 1.0))


def check_shared_cache(app_configs=None, **kwargs):
    """Deploy check: rate limits need a cache every process shares (a per-process cache multiplies each
    client's rate by the number of processes)."""
    from django.core import checks

    backend = settings.CACHES.get("default", {}).get("BACKEND", "")
    if backend.endswith(("locmem.LocMemCache", "dummy.DummyCache")):
        return [
            checks.Warning(
                "The default cache is per process: API rate limits are not shared between processes.",
                hint="Set CACHE_URL to a Redis database, e.g. redis://redis:6379/1 (docs/deployment.md).",
                id="billing_mgmt.W001",
            )
        ]
    return []
