"""Django admin of the statements app, one module per part (Django imports this package as the app's admin).

* ledger: the ledger and cached balances, read-only;
"""

from . import ledger  # noqa: F401
