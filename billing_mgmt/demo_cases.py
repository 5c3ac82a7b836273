"""Demo cases and disputes (``manage.py load_demo``): the demo customer's account gets a dispute on a line of
its latest statement and a billing inquiry from the portal, a CSR's due-date extension waits for a supervisor,
and a few other accounts have cases in the queue (one past its service level, one resolved). Made through the
services, so history, audit records and e-mails are as in real use. Idempotent: loaded once."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.utils import timezone

from accounts.models import Account, Contact
from disputes.catalog import ensure_default_processes
from disputes.models import Case, ServiceProcess
from disputes.services import case_comment, case_open, case_transition, dispute_open
from payments.models import AdjustmentReason
from statements.models import Statement


@dataclass
class CasesLoad:
    cases: int
    disputes: int


def demo_cases_loaded() -> bool:
    return Case.objects.exists()


def _latest_statement(account: Account) -> Statement | None:
    return (
        Statement.objects.filter(account=account, new_charges__gt=0)
        .order_by("-statement_date", "-id")
        .prefetch_related("lines")
        .first()
    )


def load_demo_cases() -> CasesLoad:
    ensure_default_processes(ServiceProcess, AdjustmentReason)
    users = {
        u.username: u for u in get_user_model().objects.filter(username__in=["csr", "supervisor", "customer"])
    }
    csr, supervisor, customer = users["csr"], users["supervisor"], users["customer"]
    process = {p.code: p for p in ServiceProcess.objects.all()}
    made = disputes = 0

    contact = Contact.objects.filter(user=customer).select_related("account").first()
    if contact is not None:
        account = contact.account
        statement = _latest_statement(account)
        line = None
        if statement is not None:
            line = next((x for x in statement.lines.all() if x.amount > 0 and x.line_type == "usage"), None)
            line = line or next((x for x in statement.lines.all() if x.amount > 0), None)
        if line is not None:
            dispute_open(
                statement=statement,
                line=line,
                amount=line.amount,
                reason="I did not use this; I was at home all month.",
                channel=Case.Channel.PORTAL,
                actor=customer,
            )
            made += 1
            disputes += 1
        inquiry, _ = case_open(
            account=account,
            process=process["billing-inquiry"],
            subject="Why did my bill go up this month?",
            description="The last bill is higher than usual. Was there a price change?",
            channel=Case.Channel.PORTAL,
            actor=customer,
        )
        case_transition(case=inquiry, to_status=Case.Status.IN_PROGRESS, actor=csr)
        case_comment(case=inquiry, actor=csr, text="Checking the usage with the biller.", public=False)
        made += 1
        if statement is not None and statement.status != Statement.Status.PAID:
            case_open(
                account=account,
                process=process["extend-due-date"],
                subject="Two more weeks to pay, please",
                description="Customer called: salary comes late this month.",
                channel=Case.Channel.CSR,
                actor=csr,
                statement=statement,
                requested_due_date=statement.due_date + dt.timedelta(days=14),
            )
            made += 1

    others = list(
        Account.objects.filter(status=Account.Status.ACTIVE, is_paying=True)
        .exclude(contacts__user=customer)
        .order_by("number")[:3]
    )
    for index, account in enumerate(others):
        case, _ = case_open(
            account=account,
            process=process["other-inquiry" if index % 2 else "billing-inquiry"],
            subject=("Invoice sent to the wrong address", "Payment not shown on the account",
                     "Question about late fee")[index],
            description="Raised by phone.",
            channel=Case.Channel.CSR,
            actor=csr,
        )  # fmt: skip
        made += 1
        if index == 0:  # past its service level: first in the supervisors' queue
            Case.objects.filter(pk=case.pk).update(due_at=timezone.now() - dt.timedelta(hours=6))
        if index == 2:
            case_transition(case=case, to_status=Case.Status.IN_PROGRESS, actor=csr)
            case_transition(
                case=Case.objects.get(pk=case.pk), to_status=Case.Status.RESOLVED, actor=supervisor,
                resolution="The late fee was correct: the payment arrived after the due date.",
            )  # fmt: skip
    return CasesLoad(cases=made, disputes=disputes)
