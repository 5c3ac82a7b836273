"""Disputes raised and decided at the same moment: one open dispute per line, one credit per dispute."""

from __future__ import annotations

from decimal import Decimal

import pytest

from billing_mgmt.errors import ApplicationError, Conflict
from disputes.models import Case, Dispute
from disputes.services import dispute_open, dispute_resolve
from payments.models import Adjustment
from statements.models import Statement
from tests.concurrency import run_in_threads
from tests.disputes.builders import world
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_same_line_disputed_from_eight_threads_makes_one_dispute():
    w = world()
    line = w.line(2)

    def raise_dispute(i):
        try:
            dispute_open(
                statement=w.statement, line=line, amount="25.00", reason=f"try {i}", channel="portal",
                actor=w.customer,
            )  # fmt: skip
            return "opened"
        except ApplicationError as exc:
            return exc.fields

    results, errors = run_in_threads(raise_dispute, 8)
    assert errors == []
    assert results.count("opened") == 1
    assert all(r == {"line": ["This line already has an open dispute."]} for r in results if r != "opened")
    assert (Case.objects.count(), Dispute.objects.count()) == (1, 1)
    assert Statement.objects.get(pk=w.statement.pk).disputed_amount == Decimal("25.00")


def test_two_supervisors_deciding_one_dispute_make_one_credit():
    w = world()
    case, _ = dispute_open(statement=w.statement, line=w.line(1), amount="40.00", reason="wrong",
                           channel="portal", actor=w.customer)  # fmt: skip
    supervisors = [w.supervisor, UserFactory(role="Supervisor")]

    def decide(i):
        try:
            dispute_resolve(dispute=case.dispute, actor=supervisors[i], approve=True, amount="30.00")
            return "approved"
        except Conflict as exc:
            return exc.code

    results, errors = run_in_threads(decide, 2)
    assert errors == []
    assert sorted(results) == ["already_decided", "approved"]
    assert Adjustment.objects.count() == 1
    assert Dispute.objects.get().approved_amount == Decimal("30.00")
