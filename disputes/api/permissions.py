"""Who may use the cases API.

* A biller's API client reads the cases of the accounts it references (accounts.BillerReference) and raises
  inquiries on them; the views scope every query, so another account's case is a 404.
* Staff via session by model permission: ``disputes.view_case`` reads every account's cases (CSR, Supervisor,
  Billing admin); ``disputes.add_case`` raises inquiries; ``disputes.view_serviceprocess`` reads the catalog.
* Anyone else authenticated (customers, users without a role) gets 403; anonymous callers get 401.
  Customers follow their cases in the portal, not here.
"""

from __future__ import annotations

from rest_framework.permissions import SAFE_METHODS

from accounts.api.permissions import SignedIn, is_api_client

VIEW_CASE = "disputes.view_case"
ADD_CASE = "disputes.add_case"
VIEW_SERVICE_PROCESS = "disputes.view_serviceprocess"


class CasesPermission(SignedIn):
    """Biller clients read and raise inquiries (scoped by the views); staff read with ``view_case`` and raise
    with ``add_case``."""

    def has_permission(self, request, view) -> bool:
        if not super().has_permission(request, view):
            return False
        user = request.user
        if is_api_client(user):
            return True
        if request.method in SAFE_METHODS:
            self.message = "Your role does not allow reading cases."
            return user.has_perm(VIEW_CASE)
        self.message = "Your role does not allow raising cases."
        return user.has_perm(ADD_CASE)


class ServiceProcessesPermission(SignedIn):
    """The catalog: biller clients, and staff with ``view_serviceprocess``."""

    def has_permission(self, request, view) -> bool:
        if not super().has_permission(request, view):
            return False
        user = request.user
        return is_api_client(user) or user.has_perm(VIEW_SERVICE_PROCESS)
