"""Test data for cases and disputes: an account with a customer (portal user), a billed statement with lines,
and the staff who work cases. Shared by the service, page, portal, API and browser tests."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from accounts.models import Account, Contact
from billing_mgmt import roles
from disputes.catalog import ensure_default_processes
from disputes.models import ServiceProcess
from payments.models import AdjustmentReason
from statements.models import Statement, StatementLine
from statements.services import transaction_post
from tests.factories import AccountFactory, ContactFactory, UserFactory
from tests.invoicing.builders import _statement

D = Decimal


def processes() -> dict[str, ServiceProcess]:
    """The default catalog (a flush in a transactional test removes what the migration seeded)."""
    ensure_default_processes(ServiceProcess, AdjustmentReason)
    return {p.action if p.action != "inquiry" else p.code: p for p in ServiceProcess.objects.all()}


def billed_statement(
    account: Account, number: str, lines: list[tuple[str, str]], *, due=dt.date(2026, 11, 15), tax="0.00"
) -> Statement:
    """A statement of the engine biller with charge lines (product, amount) and its ledger row, open."""
    charges = sum((D(a) for _, a in lines), D(0))
    statement = _statement(account, number=number, new_charges=charges, taxes=D(tax))
    Statement.objects.filter(pk=statement.pk).update(due_date=due, status=Statement.Status.OPEN)
    statement.refresh_from_db()
    StatementLine.objects.bulk_create(
        StatementLine(
            statement=statement, position=i, line_type=StatementLine.Type.RECURRING, product=product,
            description=f"{product} monthly", amount=D(amount), service_type="mobile",
        )
        for i, (product, amount) in enumerate(lines, start=1)
    )  # fmt: skip
    if statement.ledger_amount:
        transaction_post(
            account=account,
            kind="bill",
            amount=statement.ledger_amount,
            currency=statement.currency,
            effective_date=statement.statement_date,
            statement=statement,
            idempotency_key=f"bill:{statement.pk}",
        )
    return statement


@dataclass
class World:
    account: Account
    other_account: Account
    customer: object
    other_customer: object
    csr: object
    supervisor: object
    statement: Statement
    other_statement: Statement
    processes: dict[str, ServiceProcess]

    def line(self, position: int = 1, statement: Statement | None = None) -> StatementLine:
        return (statement or self.statement).lines.get(position=position)


def world() -> World:
    """Two customers, each with an account and a statement (three lines on the first: 40.00, 25.00, 10.00),
    a CSR and a supervisor."""
    account = AccountFactory(name="Alice Example")
    other = AccountFactory(name="Bob Other")
    customer = UserFactory(username="alice", email="alice@example.com", role=roles.CUSTOMER)
    other_customer = UserFactory(username="bob", email="bob@example.com", role=roles.CUSTOMER)
    ContactFactory(
        account=account, name="Alice Example", email="alice@example.com", role=Contact.Role.PRIMARY
    )
    ContactFactory(account=account, name="Alice Example", email="alice@example.com",
                   role=Contact.Role.PORTAL_USER, user=customer)  # fmt: skip
    ContactFactory(account=other, name="Bob Other", email="bob@example.com", role=Contact.Role.PRIMARY)
    ContactFactory(account=other, name="Bob Other", email="bob@example.com", role=Contact.Role.PORTAL_USER,
                   user=other_customer)  # fmt: skip
    statement = billed_statement(account, "INV-A-1", [("Mobile plan", "40.00"), ("Roaming", "25.00"),
                                                      ("Device", "10.00")])  # fmt: skip
    other_statement = billed_statement(other, "INV-B-1", [("Broadband", "30.00")])
    return World(
        account=account,
        other_account=other,
        customer=customer,
        other_customer=other_customer,
        csr=UserFactory(username="csr1", first_name="Casey", last_name="Rep", role=roles.CSR),
        supervisor=UserFactory(username="sup1", first_name="Sam", last_name="Visor", role=roles.SUPERVISOR),
        statement=statement,
        other_statement=other_statement,
        processes=processes(),
    )
