"""Prove that every foreign key the database does not enforce names an existing row (exit 1 if not)."""

from django.core.management.base import BaseCommand, CommandError

from billing_mgmt.references import dangling_references, unchecked_keys


class Command(BaseCommand):
    help = (
        "Check the foreign keys that carry no database constraint (rows billing runs write by the ten "
        "thousand: usage links, calculation and statement lines): every key must name an existing row."
    )

    def handle(self, *args, **options):
        dangling = dangling_references()
        if not dangling:
            self.stdout.write(
                self.style.SUCCESS(
                    f"References checked: {len(unchecked_keys())} unenforced keys, none dangling."
                )
            )
            return
        for d in dangling:
            ids = ", ".join(str(pk) for pk in d.example_ids)
            self.stdout.write(
                f"{d.table}.{d.column} -> {d.target}: {d.rows} row(s) name no row (ids {ids}, …)"
            )
        raise CommandError(f"{sum(d.rows for d in dangling)} row(s) name missing rows.")
