"""Who may use the accounts API.

* A biller's API client (``Authorization: Api-Key ...``) reads and writes, but only the accounts that have a
  reference at its biller (the views scope every query; another biller's account is a 404).
* Staff via session: CSR, Supervisor and Billing admin read every account; only Billing admins (and
  superusers) write.
* Anyone else authenticated (customers, users without a role) gets 403; anonymous callers get 401.
"""

from __future__ import annotations

from rest_framework.permissions import SAFE_METHODS, BasePermission

from accounts.models import Biller
from billing_mgmt.roles import BILLING_ADMIN, has_role, is_staff_member


def is_api_client(user) -> bool:
    return bool(getattr(user, "is_api_client", False))


def caller_biller(request) -> Biller | None:
    """The calling biller, or None for a person (staff) using a session."""
    user = request.user
    return user.biller if is_api_client(user) else None


def may_write_any_account(user) -> bool:
    """Staff who may write every account and set fields billers may not (such as status)."""
    return not is_api_client(user) and has_role(user, BILLING_ADMIN)


class SignedIn(BasePermission):
    """The base of the API's permission classes: a caller who is signed in (a user or a biller's API client);
    subclasses add what their role must allow, anonymous callers get 401."""

    message = "Your role does not allow this."

    def has_permission(self, request, view) -> bool:
        user = request.user
        return bool(user and user.is_authenticated)


class AccountApiPermission(BasePermission):
    message = "Your role does not allow this."

    def has_permission(self, request, view) -> bool:
        user = request.user
        if not user or not user.is_authenticated:
            return False
        if is_api_client(user):
            return True
        if request.method in SAFE_METHODS:
            return is_staff_member(user)
        return may_write_any_account(user)


class BillerClientOnly(BasePermission):
    message = "Addressing accounts by reference is for biller API clients; staff use ?biller=&external_ref=."

    def has_permission(self, request, view) -> bool:
        return is_api_client(request.user)
