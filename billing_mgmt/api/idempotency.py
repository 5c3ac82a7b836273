"""``Idempotency-Key`` for API writes: a repeated request replays the first answer instead of writing again.

A client that may retry a write (a timeout, a lost connection) sends a key of its choosing, unique per
intended operation::

    Idempotency-Key: 6f1c9a2e-...

* same client + same key + same request (method, path, body): the first answer is replayed, same status and
  body, with the header ``Idempotent-Replayed: true``; nothing is written again;
* same client + same key + a different request: 409 ``idempotency_key_reused``;
* a request that failed (4xx or an exception) stores nothing: the key may be used again.

How exactly-once holds under concurrency: the ``IdempotencyRecord`` row is inserted *first*, inside the
transaction that then does the write, and completed with the answer before commit. A concurrent request with
the same key blocks on the unique index (client, key) until the first commits, then fails to insert, reads the
committed row and replays it; if the first rolled back, the second's insert succeeds and it does the write.
So a key never produces two writes, and a visible row always holds a finished answer.

Use it on any write view method::

    @idempotent
    def create(self, request, *args, **kwargs): ...

Keys are scoped per client (a biller, or a user), so two billers may use the same key.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Callable

from django.db import IntegrityError, transaction
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from billing_mgmt.errors import ApplicationError, Conflict
from billing_mgmt.models import IdempotencyRecord

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
_VALID_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")  # printable ASCII, no spaces


def client_identity(user) -> str:
    """Who owns a key: the biller of an API client (keys survive key rotation), else the user."""
    biller = getattr(user, "biller", None) if getattr(user, "is_api_client", False) else None
    if biller is not None:
        return f"biller:{biller.pk}"
    return f"user:{user.pk}"


def request_fingerprint(request) -> str:
    data = request.data
    if hasattr(data, "lists"):  # a QueryDict from a form or multipart body
        data = dict(data.lists())
    canonical = json.dumps(
        {"method": request.method, "path": request.path, "body": data},
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _replay(record: IdempotencyRecord) -> Response:
    response = Response(record.response_body, status=record.status_code)
    response[REPLAYED_HEADER] = "true"
    return response


def run_idempotent(request, key: str, handler: Callable[[], Response]) -> Response:
    """Run ``handler`` at most once per (client, key); see the module docstring."""
    if not _VALID_KEY.match(key):
        raise ApplicationError(
            "The Idempotency-Key header is not valid.",
            fields={HEADER: ["Use 1 to 255 printable ASCII characters without spaces."]},
        )
    client = client_identity(request.user)
    fingerprint = request_fingerprint(request)
    with transaction.atomic():
        try:
            with transaction.atomic():
                record = IdempotencyRecord.objects.create(
                    client=client,
                    key=key,
                    method=request.method,
                    path=request.path[:500],
                    request_hash=fingerprint,
                    status_code=0,  # completed below, before commit: no other transaction sees this value
                )
        except IntegrityError:
            existing = IdempotencyRecord.objects.get(client=client, key=key)
            if existing.request_hash != fingerprint:
                raise Conflict(
                    "This Idempotency-Key was already used for a different request.",
                    code="idempotency_key_reused",
                    fields={HEADER: ["Already used for a different request."]},
                ) from None
            return _replay(existing)

        response = handler()
        if not 200 <= response.status_code < 300:
            transaction.set_rollback(True)  # store nothing: the write failed, the key stays free
            return response
        record.status_code = response.status_code
        # Store what the client received, as JSON (decimals and dates already as strings).
        record.response_body = json.loads(JSONRenderer().render(response.data) or b"null")
        record.save(update_fields=["status_code", "response_body"])
        return response


def idempotent(view_method: Callable) -> Callable:
    """Decorate a DRF view method (create, update, an action): honour the Idempotency-Key header if sent."""

    @functools.wraps(view_method)
    def wrapper(self, request, *args, **kwargs):
        key = request.headers.get(HEADER)
        if key is None or request.method in ("GET", "HEAD", "OPTIONS"):
            return view_method(self, request, *args, **kwargs)
        return run_idempotent(request, key.strip(), lambda: view_method(self, request, *args, **kwargs))

    return wrapper
