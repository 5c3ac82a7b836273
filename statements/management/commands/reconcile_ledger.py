"""Prove every cached balance equal to the sum of its ledger rows. Exit 1 on any difference."""

from django.core.management.base import BaseCommand, CommandError

from statements.selectors import ledger_mismatches
from statements.services import balances_rebuild


class Command(BaseCommand):
    help = "Compare cached account balances with the sum of ledger rows; --repair rebuilds the cache."

    def add_arguments(self, parser):
        parser.add_argument(
            "--account", type=int, action="append", dest="accounts", help="Account id (repeatable)."
        )
        parser.add_argument(
            "--repair",
            action="store_true",
            help="Rebuild differing cached balances from the ledger (audited).",
        )

    def handle(self, *args, accounts=None, repair=False, **options):
        mismatches = ledger_mismatches(account_ids=accounts)
        if not mismatches:
            self.stdout.write(self.style.SUCCESS("Ledger reconciled: every cached balance equals its rows."))
            return
        for m in mismatches:
            self.stdout.write(
                f"account {m.account_id} {m.balance_type}: cached {m.cached_amount} ({m.cached_count} rows), "
                f"ledger {m.ledger_amount} {m.currency} ({m.ledger_count} rows)"
            )
        if repair:
            changed = balances_rebuild(account_ids=accounts)
            self.stdout.write(self.style.WARNING(f"Rebuilt {changed} cached balance(s) from the ledger."))
            return
        raise CommandError(f"{len(mismatches)} cached balance(s) differ from the ledger.")
