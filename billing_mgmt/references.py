"""Foreign keys the database does not check, checked on demand.

The tables a billing run writes by the ten thousand per unit of work (usage links, calculation lines,
statement lines, usage summaries) carry no database foreign-key constraint: PostgreSQL checks one with a
query per row at commit, which cost a third of a run's database time. Their services write them in the
transaction that writes or locks the rows they name, and Django's ``on_delete`` still applies to the ORM's
deletes. ``dangling_references`` proves it afterwards: it finds every such key in the installed models (a
``ForeignKey`` or ``OneToOneField`` with ``db_constraint=False``) and counts the rows whose key names no
row, one anti-join per key. ``manage.py check_references`` runs it; the test suite and the benchmark
check it after billing.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.apps import apps
from django.db import models
from django.db.models import Exists, OuterRef


@dataclass(frozen=True)
class DanglingReference:
    table: str
    column: str
    target: str
    rows: int
    example_ids: list


def unchecked_keys() -> list[tuple[type[models.Model], models.ForeignKey]]:
    """Every foreign key of the installed models that the database does not enforce."""
    return [
        (model, field)
        for model in apps.get_models()
        if model._meta.managed and not model._meta.proxy
        for field in model._meta.concrete_fields
        if isinstance(field, models.ForeignKey) and not field.db_constraint
    ]


def dangling_references(*, examples: int = 5) -> list[DanglingReference]:
    """The unchecked keys that name missing rows, with how many rows and a few of their ids."""
    found = []
    for model, field in unchecked_keys():
        target = field.related_model
        rows = model._base_manager.filter(**{f"{field.attname}__isnull": False}).filter(
            ~Exists(target._base_manager.filter(**{field.target_field.attname: OuterRef(field.attname)}))
        )
        count = rows.count()
        if count:
            found.append(
                DanglingReference(
                    table=model._meta.db_table,
                    column=field.column,
                    target=target._meta.db_table,
                    rows=count,
                    example_ids=list(rows.order_by("pk").values_list("pk", flat=True)[:examples]),
                )
            )
    return found
