"""Payments API: payments and adjustments of the caller's accounts, payments received elsewhere, reversals."""
