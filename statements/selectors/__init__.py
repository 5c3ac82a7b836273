"""Reads of the statements app; import them from ``statements.selectors``."""

from .charts import (
    BillingByChargeType,
    BillingByMonth,
    UsageByMonth,
    billing_by_charge_type,
    billing_by_month,
    month_window,
    usage_by_month,
)
from .ledger import (
    BalanceMismatch,
    account_balances,
    account_receivable,
    account_transactions,
    ledger_mismatches,
    ledger_sum,
)
from .pull import BillerFreshness, account_freshness, account_refresh_get, account_refresh_latest
from .reconciliation import BillerBalanceComparison, biller_balance_comparisons, reconciliation_differences
from .reports import BilledAmounts, ReconciliationRow, billed_amounts, reconciliation_report
from .statements import (
    AccountBillerBalances,
    BillerBalanceRow,
    ServiceGroup,
    account_statements,
    account_statements_page,
    biller_balances,
    statement_for_account,
    statement_line_groups,
)

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
    # admin reports
    "BilledAmounts",
    "ReconciliationRow",
    "billed_amounts",
    "reconciliation_report",
    # statements and charts
    "AccountBillerBalances",
    "BillerBalanceRow",
    "BillingByChargeType",
    "BillingByMonth",
    "ServiceGroup",
    "UsageByMonth",
    "account_statements",
    "account_statements_page",
    "biller_balances",
    "billing_by_charge_type",
    "billing_by_month",
    "month_window",
    "statement_for_account",
    "statement_line_groups",
    "usage_by_month",
    # pull from billers
    "BillerFreshness",
    "account_freshness",
    "account_refresh_get",
    "account_refresh_latest",
]
