"""Audit records: services call ``audit_record`` inside their transaction, so the record and the change
commit or roll back together."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

from django.db import models
from django.utils import timezone

from .bulk import insert_rows
from .middleware import current_request_id
from .models import AuditRecord


def _json_value(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, models.Model):
        return value.pk
    return value


def snapshot(obj: models.Model, fields: list[str] | None = None) -> dict[str, Any]:
    """A JSON-ready dict of the object's concrete fields (foreign keys as ids)."""
    result = {}
    for field in obj._meta.concrete_fields:
        if fields is not None and field.name not in fields:
            continue
        result[field.attname] = _json_value(getattr(obj, field.attname))
    return result


def _actor_fields(actor: Any) -> dict[str, Any]:
    if actor is None:
        return {"actor_type": AuditRecord.ActorType.SYSTEM, "actor_label": "system"}
    if isinstance(actor, str):
        return {"actor_type": AuditRecord.ActorType.SYSTEM, "actor_label": actor[:200]}
    if getattr(actor, "is_api_client", False):
        return {"actor_type": AuditRecord.ActorType.API_CLIENT, "actor_label": str(actor)[:200]}
    if getattr(actor, "is_authenticated", False):
        return {
            "actor_type": AuditRecord.ActorType.USER,
            "actor_user": actor,
            "actor_label": actor.get_username()[:200],
        }
    return {"actor_type": AuditRecord.ActorType.SYSTEM, "actor_label": "anonymous"}


def audit_record(
    *,
    actor: Any,
    action: str,
    obj: models.Model,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    account_id: int | None = None,
) -> AuditRecord:
    """Write one audit record. ``actor`` is a user, an API client (``is_api_client``), a task name or None."""
    return AuditRecord.objects.create(
        **_actor_fields(actor),
        action=action,
        object_type=obj._meta.label_lower,
        object_id=str(obj.pk),
        account_id=account_id,
        before=before,
        after=after,
        request_id=current_request_id(),
    )


def audit_records_bulk(
    *,
    actor: Any,
    action: str,
    objects: list[models.Model],
    afters: list[dict[str, Any] | None],
    account_ids: list[int | None],
    befores: list[dict[str, Any] | None] | None = None,
) -> int:
    """One audit record per object, written in one COPY (work done in sets: a billing run's bills, a batch's
    payments). Returns how many. Measured on 500 bills' records: 45 ms as ``bulk_create``, 7 ms so."""
    if not objects:
        return 0
    actor_fields = _actor_fields(actor)
    user = actor_fields.get("actor_user")
    request_id = current_request_id()
    now = timezone.now()
    befores = befores or [None] * len(objects)
    return insert_rows(
        AuditRecord,
        AUDIT_COLUMNS,
        (
            (
                now,
                actor_fields["actor_type"],
                user.pk if user is not None else None,
                actor_fields["actor_label"],
                action,
                obj._meta.label_lower,
                str(obj.pk),
                account_id,
                before,
                after,
                request_id,
            )
            for obj, after, before, account_id in zip(objects, afters, befores, account_ids, strict=True)
        ),
    )


AUDIT_COLUMNS = (
    "created_at", "actor_type", "actor_user", "actor_label", "action", "object_type", "object_id",
    "account_id", "before", "after", "request_id",
)  # fmt: skip


def changed(before: dict[str, Any], after: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    return {k: (before.get(k), v) for k, v in after.items() if before.get(k) != v}
