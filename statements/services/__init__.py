"""Writes of the statements app. Every write that means something to the business is a function here, one
transaction each; import them from ``statements.services``.

* ledger: post, reverse and rebuild balances (``transaction_post`` is the only way money moves);
* ingest: store what billers send (statements, balance snapshots, their payments and adjustments, usage).
"""

from .ingest import (
    IngestResult,
    balance_snapshot_record,
    biller_transaction_ingest,
    ingest_records,
    statement_ingest,
    usage_summary_ingest,
)
from .ledger import balances_rebuild, transaction_post, transaction_reverse

__all__ = [
    "IngestResult",
    "balance_snapshot_record",
    "balances_rebuild",
    "biller_transaction_ingest",
    "ingest_records",
    "statement_ingest",
    "transaction_post",
    "transaction_reverse",
    "usage_summary_ingest",
]
