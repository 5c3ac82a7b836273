"""Invoicing API (invoicing.api.urls): invoices, their frozen documents, issuing one bill's invoice."""
