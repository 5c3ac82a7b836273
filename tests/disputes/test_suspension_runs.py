"""An approved "suspend billing" case: billing runs skip the account (exception billing_suspended) and bill
now is refused, until a supervisor resumes billing; then the next run bills it."""

from __future__ import annotations

import pytest

from accounts.models import Contact
from billing_mgmt.errors import ApplicationError
from billruns.models import RunAccount, RunException, Stage
from billruns.services import bill_create
from disputes.models import Case
from disputes.services import billing_resume_for, case_open, case_transition
from statements.models import Statement
from tests.billruns.runs_helpers import JULY_1, customer, definition, monthly_plan, run_to
from tests.disputes.builders import processes
from tests.factories import ContactFactory, UserFactory

pytestmark = pytest.mark.django_db(transaction=True)


def test_billing_runs_skip_a_suspended_account_until_it_is_resumed(eager):
    definition()
    plan = monthly_plan()
    suspended, _ = customer(plan)
    billed, _ = customer(plan)
    ContactFactory(account=suspended, role=Contact.Role.PRIMARY)
    csr = UserFactory(role="CSR")
    supervisor = UserFactory(role="Supervisor")
    case, _ = case_open(
        account=suspended, process=processes()["suspend_billing"], subject="Away", channel="csr", actor=csr
    )
    case_transition(case=case, to_status=Case.Status.RESOLVED, actor=supervisor)

    run = run_to(Stage.POSTING)
    assert run.bills_generated == 1
    (problem,) = RunException.objects.filter(run=run)
    assert (problem.account, problem.code, problem.stage) == (suspended, "billing_suspended", Stage.RATING)
    assert case.number in problem.message
    assert RunAccount.objects.get(run=run, account=suspended).status == RunAccount.Status.EXCEPTION
    assert list(Statement.objects.values_list("account", flat=True)) == [billed.pk]
    with pytest.raises(ApplicationError) as refused:
        bill_create(account=suspended, bill_date=JULY_1)
    assert refused.value.code == "billing_suspended"

    billing_resume_for(account=suspended, actor=supervisor, note="Back")
    again = run_to(Stage.POSTING)
    assert (again.bills_generated, again.exception_count) == (1, 0)
    assert Statement.objects.filter(account=suspended).count() == 1
    assert Statement.objects.filter(account=billed).count() == 1  # not billed twice
