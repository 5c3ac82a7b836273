"""Run the fake biller (statements/fake_biller.py): the HTTP pull contract over generated or given records."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.db import close_old_connections, connection

from accounts.models import BillerReference
from statements.fake_biller import FakeBiller


class Command(BaseCommand):
    help = (
        "Serve the pull contract (docs/pull-contract.md) as a fake biller, for the demo and trying pulls. "
        "--seed gives every account referenced at the biller (--biller, default contoso) a few months of "
        "statements, payments and a balance, and keeps doing so for references added while it runs."
    )

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8100)
        parser.add_argument(
            "--data", type=Path, help='A JSON file of records ({"records": [...]} or a list).'
        )
        parser.add_argument(
            "--seed", action="store_true", help="Generate data for the biller's accounts in this database."
        )
        parser.add_argument(
            "--biller", default="contoso", help="The biller code whose references --seed uses."
        )
        parser.add_argument("--auth-header", default=None, help="Require this exact Authorization header.")

    def handle(self, *args, host: str, port: int, data: Path | None, seed: bool, biller: str, **options):
        records = []
        if data is not None:
            try:
                loaded = json.loads(data.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise CommandError(f"Cannot read {data}: {exc}") from None
            records = loaded.get("records", []) if isinstance(loaded, dict) else loaded
            if not isinstance(records, list):
                raise CommandError(f'{data} holds neither {{"records": [...]}} nor a list of records.')

        def accounts() -> list[tuple[str, str]]:
            # Called from the server's request threads: each uses (and then closes) its own connection.
            close_old_connections()
            try:
                found = BillerReference.objects.filter(biller__code=biller).order_by("external_ref")
                return [
                    (ref, currency or "USD")
                    for ref, currency in found.values_list(
                        "external_ref", "account__billing_profile__currency"
                    )
                ]
            finally:
                connection.close()

        try:
            fake = FakeBiller(
                host=host,
                port=port,
                records=records,
                auth_header=options["auth_header"],
                accounts_provider=accounts if seed else None,
            )
        except OSError as exc:
            raise CommandError(f"Cannot listen on {host}:{port}: {exc}") from None
        self.stdout.write(
            f"Fake biller serving the pull contract at {fake.url}changes "
            f"({len(records)} records loaded{', generating for ' + biller + ' references' if seed else ''})."
        )
        self.stdout.flush()
        with contextlib.suppress(KeyboardInterrupt):
            fake.serve_forever()
