"""One-time form tokens: a fresh random key signed for the user and for what the form is about (an account's
new case, a statement line's dispute). A page puts one in a hidden field; the post hands its key to the
service as the idempotency key, so a double submit (or a replayed post) makes one record, and a token forged,
made for another user or for another form is refused."""

from __future__ import annotations

import uuid

from django.core import signing

from .errors import ApplicationError

EXPIRED = "This form has expired. Check the details and send it again."
OTHER_FORM = "This form was made for another request. Send it again."


def token_issue(*, salt: str, user_pk: int, scope: str) -> str:
    return signing.dumps({"scope": scope, "key": uuid.uuid4().hex}, salt=f"{salt}:{user_pk}")


def token_key(*, salt: str, user_pk: int, scope: str, token: str) -> str:
    """The key the posted token stands for; ApplicationError (``invalid_token``) when it is not this user's
    token for this form."""
    try:
        payload = signing.loads(token or "", salt=f"{salt}:{user_pk}")
    except signing.BadSignature:
        raise ApplicationError(EXPIRED, code="invalid_token") from None
    if payload.get("scope") != scope:
        raise ApplicationError(OTHER_FORM, code="invalid_token")
    return payload["key"]
