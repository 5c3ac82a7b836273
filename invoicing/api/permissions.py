"""Who may use the invoicing API.

Invoices are this product's own documents (its legal entity issues them), not a biller's data: biller API
clients get 403 on every endpoint, whatever their key. Staff read with ``invoicing.view_invoice`` (CSR,
Supervisor, Billing admin) and issue with ``invoicing.add_invoice`` (Billing admin). Customers and users
without a role get 403 (customers download their invoices in the portal); anonymous callers 401.
"""

from __future__ import annotations

from rest_framework.permissions import BasePermission

from accounts.api.permissions import is_api_client

VIEW_INVOICE = "invoicing.view_invoice"
ADD_INVOICE = "invoicing.add_invoice"
VIEW_DELIVERY = "invoicing.view_invoicedelivery"


class _StaffWithPermission(BasePermission):
    perm = ""
    message = "Your role does not allow this."

    def has_permission(self, request, view) -> bool:
        user = request.user
        if not user or not user.is_authenticated:
            return False
        if is_api_client(user):
            self.message = "Invoices are this product's documents; biller API clients may not use them."
            return False
        return user.has_perm(self.perm)


class CanViewInvoices(_StaffWithPermission):
    perm = VIEW_INVOICE


class CanIssueInvoices(_StaffWithPermission):
    perm = ADD_INVOICE
