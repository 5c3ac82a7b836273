"""Who may use the statements API.

* A biller's API client writes (statements, balances, transactions, usage, bulk ingest) and reads, always
  scoped to its own biller: the ingest service finds accounts only by the biller's own references, and the
  read querysets return only the biller's own statements (another biller's statement is a 404).
* Staff via session (CSR, Supervisor, Billing admin) read every biller's statements; they never write here,
  because what a biller sends is the biller's word, not ours.
* Anyone else authenticated (customers, users without a role) gets 403; anonymous callers get 401.
"""

from __future__ import annotations

from rest_framework.permissions import SAFE_METHODS, BasePermission

from accounts.api.permissions import is_api_client
from billing_mgmt.roles import is_staff_member


class StatementsApiPermission(BasePermission):
    message = "Only billers send data here; staff may read."

    def has_permission(self, request, view) -> bool:
        user = request.user
        if not user or not user.is_authenticated:
            return False
        if is_api_client(user):
            return True
        return request.method in SAFE_METHODS and is_staff_member(user)
