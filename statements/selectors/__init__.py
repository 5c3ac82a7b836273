"""Reads of the statements app; import them from ``statements.selectors``."""

from .ledger import (
    BalanceMismatch,
    account_balances,
    account_receivable,
    account_transactions,
    ledger_mismatches,
    ledger_sum,
)
from .reconciliation import BillerBalanceComparison, biller_balance_comparisons, reconciliation_differences

__all__ = [
    "BalanceMismatch",
    "BillerBalanceComparison",
    "account_balances",
    "account_receivable",
    "account_transactions",
    "biller_balance_comparisons",
    "ledger_mismatches",
    "ledger_sum",
    "reconciliation_differences",
]
