"""Who may use the payments API.

* A biller's API client reads the payments and adjustments of the accounts it references and posts payments
  received elsewhere to them (the views scope every query: another account is a 404). It may not reverse.
* Staff via session by model permission: ``payments.view_payment`` / ``payments.view_adjustment`` read every
  account's (CSR, Supervisor, Billing admin); ``payments.add_payment`` posts and reverses payments.
* Refunds and write-offs: biller clients read those of the accounts they reference; staff read them with
  ``payments.view_refund`` / ``payments.view_writeoff`` and post them with ``payments.add_refund`` /
  ``payments.write_off_balance`` (supervisors, billing admins). Biller clients may not post them.
* Anyone else authenticated (customers, users without a role) gets 403; anonymous callers get 401.
"""

from __future__ import annotations

from rest_framework.permissions import SAFE_METHODS

from accounts.api.permissions import SignedIn, is_api_client

VIEW_PAYMENT = "payments.view_payment"
ADD_PAYMENT = "payments.add_payment"
VIEW_ADJUSTMENT = "payments.view_adjustment"
VIEW_REFUND = "payments.view_refund"
ADD_REFUND = "payments.add_refund"
VIEW_WRITE_OFF = "payments.view_writeoff"
WRITE_OFF = "payments.write_off_balance"


class PaymentsPermission(SignedIn):
    """Biller clients read and post (scoped by the views); staff read with view_payment, post with
    add_payment."""

    def has_permission(self, request, view) -> bool:
        if not super().has_permission(request, view):
            return False
        user = request.user
        if is_api_client(user):
            return True
        if request.method in SAFE_METHODS:
            return user.has_perm(VIEW_PAYMENT)
        self.message = "Your role does not allow posting payments."
        return user.has_perm(ADD_PAYMENT)


class ReversePermission(SignedIn):
    """Reversals are staff decisions (a bounced cheque, a mistake): staff with add_payment only."""

    def has_permission(self, request, view) -> bool:
        if not super().has_permission(request, view):
            return False
        user = request.user
        if is_api_client(user):
            self.message = "Biller API clients may not reverse payments; staff reverse them."
            return False
        self.message = "Your role does not allow reversing payments."
        return user.has_perm(ADD_PAYMENT)


class AdjustmentsPermission(SignedIn):
    def has_permission(self, request, view) -> bool:
        if not super().has_permission(request, view):
            return False
        user = request.user
        return is_api_client(user) or user.has_perm(VIEW_ADJUSTMENT)


class _StaffPostsPermission(SignedIn):
    """Biller clients read (scoped by the views); staff read with ``view`` and post with ``add``."""

    view = add = ""
    denied_client = denied_staff = ""

    def has_permission(self, request, view) -> bool:
        if not super().has_permission(request, view):
            return False
        user = request.user
        if request.method in SAFE_METHODS:
            return is_api_client(user) or user.has_perm(self.view)
        if is_api_client(user):
            self.message = self.denied_client
            return False
        self.message = self.denied_staff
        return user.has_perm(self.add)


class RefundsPermission(_StaffPostsPermission):
    view, add = VIEW_REFUND, ADD_REFUND
    denied_client = "Biller API clients may not post refunds; staff refund credit balances."
    denied_staff = "Your role does not allow refunds."


class WriteOffsPermission(_StaffPostsPermission):
    view, add = VIEW_WRITE_OFF, WRITE_OFF
    denied_client = "Biller API clients may not write off balances; supervisors do."
    denied_staff = "Only supervisors write off balances."
