"""The audit trail: written in the caller's transaction, append-only in the database."""

import pytest
from django.db import IntegrityError, connection, transaction

from billing_mgmt.audit import audit_record, audit_records_bulk, changed, snapshot
from billing_mgmt.middleware import reset_request_id, set_request_id
from billing_mgmt.models import AuditRecord


@pytest.fixture
def record(account_factory, billing_admin_user):
    account = account_factory(name="Audited")
    return audit_record(
        actor=billing_admin_user,
        action="account.update",
        obj=account,
        before={"name": "Old"},
        after={"name": "Audited"},
        account_id=account.pk,
    )


def _assert_unchanged(record: AuditRecord) -> None:
    fresh = AuditRecord.objects.get(pk=record.pk)
    assert (fresh.action, fresh.object_id, fresh.actor_label) == (
        "account.update",
        record.object_id,
        "billing-admin",
    )
    assert fresh.after == {"name": "Audited"}


def test_audit_record_fields(record, billing_admin_user):
    assert record.actor_type == AuditRecord.ActorType.USER
    assert record.actor_user == billing_admin_user
    assert record.object_type == "accounts.account"
    assert record.request_id == "-"


def test_audit_record_carries_the_request_id_and_system_actors(account_factory):
    account = account_factory()
    token = set_request_id("req-123")
    try:
        task = audit_record(actor="billrun_execute", action="x.y", obj=account)
        nobody = audit_record(actor=None, action="x.y", obj=account)
    finally:
        from billing_mgmt.middleware import _request_id

        _request_id.reset(token)
    assert (task.actor_type, task.actor_label, task.request_id) == ("system", "billrun_execute", "req-123")
    assert (nobody.actor_type, nobody.actor_label) == ("system", "system")


@pytest.mark.parametrize(
    ("sql", "params"),
    [
        ("UPDATE billing_mgmt_auditrecord SET action = %s WHERE id = %s", ["tampered"]),
        ("UPDATE billing_mgmt_auditrecord SET after = NULL WHERE id = %s", []),
        ("DELETE FROM billing_mgmt_auditrecord WHERE id = %s", []),
    ],
)
def test_audit_records_cannot_be_changed_or_deleted_raw_sql(record, sql, params):
    with pytest.raises(IntegrityError, match="append-only"), transaction.atomic(), connection.cursor() as c:
        c.execute(sql, [*params, record.pk])
    _assert_unchanged(record)


def test_audit_records_cannot_be_changed_or_deleted_through_the_orm(record):
    with pytest.raises(IntegrityError), transaction.atomic():
        AuditRecord.objects.filter(pk=record.pk).update(action="tampered")
    record.actor_label = "someone else"
    with pytest.raises(IntegrityError), transaction.atomic():
        record.save()
    with pytest.raises(IntegrityError), transaction.atomic():
        AuditRecord.objects.filter(pk=record.pk).delete()
    record.refresh_from_db()
    _assert_unchanged(record)


def test_audit_record_rolls_back_with_its_transaction(account_factory):
    account = account_factory()
    with pytest.raises(RuntimeError), transaction.atomic():
        audit_record(actor=None, action="x.rolled_back", obj=account)
        raise RuntimeError
    assert not AuditRecord.objects.filter(action="x.rolled_back").exists()


def test_snapshot_and_changed(account_factory):
    account = account_factory(name="Before")
    before = snapshot(account, ["name", "parent", "is_paying"])
    assert before == {"name": "Before", "parent_id": None, "is_paying": True}
    assert changed(before, {**before, "name": "After"}) == {"name": ("Before", "After")}


def test_audit_records_bulk_writes_what_audit_record_writes(account_factory, billing_admin_user):
    """Bulk records (one COPY) hold what one-by-one records hold: the actor, the object, the account, the
    request id, the JSON before and after (None stays empty, not JSON null), in the caller's transaction."""
    first, second = account_factory(name="One"), account_factory(name="Two")
    token = set_request_id("req-bulk")
    try:
        with transaction.atomic():
            written = audit_records_bulk(
                actor=billing_admin_user,
                action="account.update",
                objects=[first, second],
                afters=[{"name": "One", "limit": "10.50"}, None],
                befores=[None, {"name": "Old", "nested": {"a": [1, 2]}}],
                account_ids=[first.pk, None],
            )
    finally:
        reset_request_id(token)
    assert written == 2
    rows = {r.object_id: r for r in AuditRecord.objects.filter(action="account.update")}
    one, two = rows[str(first.pk)], rows[str(second.pk)]
    for row in (one, two):
        assert (row.actor_type, row.actor_user, row.actor_label) == (
            AuditRecord.ActorType.USER,
            billing_admin_user,
            "billing-admin",
        )
        assert (row.object_type, row.request_id) == ("accounts.account", "req-bulk")
        assert row.created_at is not None
    assert (one.account_id, one.before, one.after) == (first.pk, None, {"name": "One", "limit": "10.50"})
    assert (two.account_id, two.before, two.after) == (None, {"name": "Old", "nested": {"a": [1, 2]}}, None)
    assert AuditRecord.objects.filter(action="account.update", after__isnull=True).count() == 1
    assert audit_records_bulk(actor=None, action="x", objects=[], afters=[], account_ids=[]) == 0


def test_audit_records_bulk_rolls_back_with_its_transaction(account_factory):
    account = account_factory()
    with pytest.raises(RuntimeError), transaction.atomic():
        audit_records_bulk(
            actor="task", action="bulk.test", objects=[account], afters=[{}], account_ids=[None]
        )
        raise RuntimeError
    assert not AuditRecord.objects.filter(action="bulk.test").exists()
