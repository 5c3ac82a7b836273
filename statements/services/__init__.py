"""Writes of the statements app. Every write that means something to the business is a function here, one
transaction each; import them from ``statements.services``.

* ledger: post, reverse and rebuild balances (``transaction_post``, and ``transactions_post_bulk`` for work
  done in sets, are the only ways money moves);
* ingest: store what billers send (statements, balance snapshots, their payments and adjustments, usage).
* maintenance: nightly jobs (usage-detail retention, overdue statements).
* pull, pull_schedule: loads from billers that are pulled (HTTP, file drop), their beat schedules, and a CSR's
  refresh of one account.
"""

from .ingest import (
    IngestResult,
    balance_snapshot_record,
    biller_transaction_ingest,
    ingest_records,
    statement_ingest,
    usage_summary_ingest,
)
from .ledger import (
    LedgerEntry,
    balances_rebuild,
    transaction_post,
    transaction_reverse,
    transactions_post_bulk,
)
from .maintenance import statements_mark_overdue, usage_detail_purge
from .pull import (
    PullError,
    account_pull_billers,
    account_refresh_request,
    account_refresh_run,
    biller_pull,
    biller_pull_request,
    biller_watermark_reset,
    refresh_is_stale,
)
from .pull_schedule import biller_pull_schedule_sync, pull_task_name

__all__ = [
    "LedgerEntry",
    "transactions_post_bulk",
    "IngestResult",
    "balance_snapshot_record",
    "balances_rebuild",
    "biller_transaction_ingest",
    "ingest_records",
    "statement_ingest",
    "transaction_post",
    "transaction_reverse",
    "usage_summary_ingest",
    # maintenance (nightly)
    "statements_mark_overdue",
    "usage_detail_purge",
    # pull
    "PullError",
    "account_pull_billers",
    "account_refresh_request",
    "account_refresh_run",
    "biller_pull",
    "biller_pull_request",
    "biller_pull_schedule_sync",
    "biller_watermark_reset",
    "pull_task_name",
    "refresh_is_stale",
]
