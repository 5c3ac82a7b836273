"""Signal receivers of the statements app, connected in StatementsConfig.ready().

The project avoids signals for business logic (DESIGN.md §10). This one is the exception that the
dependency rule leaves: a biller's beat schedule (statements) must follow its pull settings, which admins
edit in the Biller admin (accounts), and accounts may not import statements (DESIGN.md §2). So accounts
cannot call the service from its ModelAdmin, and statements cannot reach into the accounts admin's save; a
post_save receiver is how the upper app hears of the lower app's saves. It does one thing: call the service,
in the saving transaction.
"""

from __future__ import annotations

from .services.pull_schedule import biller_pull_schedule_sync


def biller_saved(sender, instance, raw: bool = False, **kwargs) -> None:
    if raw:  # loaddata: fixtures bring their own rows
        return
    biller_pull_schedule_sync(biller=instance, actor="biller saved")
