"""Django admin of the statements app, one module per part (Django imports this package as the app's admin).

* ledger: the ledger and cached balances, read-only;
* statements: statements (read-only), billers' balance snapshots, data retention; the reports (reports).
* pull: where each pulled biller stands (Pull now, Reset watermark), its loads and account refreshes.
"""

from . import ledger, pull, statements  # noqa: F401
