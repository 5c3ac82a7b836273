"""API authentication for billers: ``Authorization: Api-Key <prefix>.<secret>``.

The request's user is a BillerClient bound to one Biller; views scope every query to that biller.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from django.utils import timezone
from rest_framework import authentication, exceptions

from accounts.models import Biller, BillerApiKey

KEYWORD = "Api-Key"


@dataclass(frozen=True)
class BillerClient:
    """The authenticated caller when a biller's system calls the API."""

    biller: Biller
    key: BillerApiKey

    is_api_client = True
    is_authenticated = True
    is_active = True
    is_anonymous = False
    is_staff = False
    is_superuser = False
    pk = None
    # An API client has no groups: billing_mgmt.roles.has_role() reads this cache instead of user.groups.
    _role_names = frozenset()

    def __str__(self) -> str:
        return f"api:{self.biller.code}:{self.key.name}"

    def has_perm(self, perm: str, obj=None) -> bool:
        return False

    def get_username(self) -> str:
        return str(self)


class BillerApiKeyAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode("latin-1")
        if not header:
            return None
        keyword, _, raw_key = header.partition(" ")
        if keyword.lower() != KEYWORD.lower():
            return None
        raw_key = raw_key.strip()
        prefix, dot, _secret = raw_key.partition(".")
        if not dot or not prefix:
            raise exceptions.AuthenticationFailed("Malformed API key.")
        key = BillerApiKey.objects.select_related("biller").filter(prefix=prefix).first()
        if key is None or not hmac.compare_digest(key.key_hash, BillerApiKey.hash_key(raw_key)):
            raise exceptions.AuthenticationFailed("Invalid API key.")
        if not key.is_active:
            raise exceptions.AuthenticationFailed("This API key is revoked or its biller is inactive.")
        now = timezone.now()
        if key.last_used_at is None or (now - key.last_used_at).total_seconds() > 60:
            BillerApiKey.objects.filter(pk=key.pk).update(last_used_at=now)  # at most once a minute per key
        return BillerClient(biller=key.biller, key=key), key

    def authenticate_header(self, request) -> str:
        return KEYWORD
