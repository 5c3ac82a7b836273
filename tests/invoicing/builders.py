"""Hand-built bills of this product's engine for invoicing tests (explicit values, nothing random).

``source_example_bill`` is source 003's example: gross 348.00, discount (25.20), tax 32.28, net 355.08.
``hierarchy_bill`` is a paying parent's consolidated bill with three non-paying children.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from django.utils import timezone

from accounts.models import Account, Contact
from billruns.services.assembly import engine_biller
from invoicing.models import StatementMessage
from statements.models import FinancialTransaction, Statement, StatementLine, UsageSummary
from tests import factories

D = Decimal
ZERO = Decimal(0)
BILL_DATE = dt.date(2026, 11, 1)


def account(
    *,
    name="Ada Lovelace",
    language="en",
    locale="en_US",
    currency="USD",
    presentment="email",
    type=Account.Type.CONSUMER,
    parent=None,
    is_paying=True,
    email="ada@example.com",
) -> Account:
    acct = factories.AccountFactory(name=name, type=type, parent=parent, is_paying=is_paying)
    profile = acct.billing_profile
    profile.language, profile.locale, profile.currency = language, locale, currency
    profile.presentment_preference = presentment
    profile.address_line1, profile.address_line2 = "12 Analytical Row", ""
    profile.city, profile.postal_code, profile.region, profile.country = "London", "NW1 2AB", "", "GB"
    profile.save()
    if is_paying:
        factories.ContactFactory(account=acct, name=name, email=email, role=Contact.Role.PRIMARY)
    return acct


def _statement(
    acct: Account,
    *,
    number: str,
    previous=ZERO,
    payments=ZERO,
    adjustments=ZERO,
    new_charges: Decimal,
    taxes: Decimal,
    corrects: Statement | None = None,
) -> Statement:
    total = previous - payments + adjustments + new_charges + taxes
    return Statement.objects.create(
        number=number,
        account=acct,
        biller=engine_biller(),
        external_id=number,
        statement_date=BILL_DATE,
        period_start=dt.date(2026, 10, 1),
        period_end=dt.date(2026, 10, 31),
        due_date=dt.date(2026, 11, 15),
        currency=acct.billing_profile.currency,
        previous_balance=previous,
        payments=payments,
        adjustments=adjustments,
        new_charges=new_charges,
        taxes=taxes,
        total_due=total,
        status=Statement.Status.OPEN if total > 0 else Statement.Status.PAID,
        channel="engine",
        content_hash=number,
        received_at=timezone.now(),
        corrects=corrects,
    )


def _line(
    statement,
    position,
    line_type,
    amount,
    *,
    product="Mobile 30",
    identifier="+44 7700 900123",
    service_type="mobile",
    description="",
    quantity=None,
    unit="",
    unit_price=None,
    account=None,
    tax_included=False,
):
    return StatementLine.objects.create(
        statement=statement,
        position=position,
        line_type=line_type,
        product=product,
        service_identifier=identifier,
        service_type=service_type,
        description=description or product,
        quantity=quantity,
        unit=unit,
        unit_price=unit_price,
        amount=D(amount),
        account=account,
        period_start=dt.date(2026, 10, 1),
        period_end=dt.date(2026, 10, 31),
        tax_included=tax_included,
    )


def _free_number(number: str) -> str:
    """The number, or the number with a suffix when a test makes more than one such bill."""
    taken = set(Statement.objects.filter(number__startswith=number).values_list("number", flat=True))
    candidate, n = number, 1
    while candidate in taken:
        n += 1
        candidate = f"{number}-{n}"
    return candidate


def source_example_bill(**account_kwargs) -> Statement:
    """Previous balance 100.00, a payment of 100.00 swept, then source 003's charges: recurring 300.00 and
    usage 48.00 (gross 348.00), discount (25.20), tax 32.28: net 355.08 due. One bill message, a usage
    summary with an allowance (free minutes left)."""
    acct = account(**account_kwargs)
    statement = _statement(
        acct,
        number=_free_number("S-000348"),
        previous=D("100.00"),
        payments=D("100.00"),
        new_charges=D("322.80"),
        taxes=D("32.28"),
    )
    T = StatementLine.Type
    _line(
        statement,
        1,
        T.RECURRING,
        "300.00",
        description="Mobile 30: monthly fee",
        quantity=D(1),
        unit_price=D("300.00"),
    )
    _line(
        statement,
        2,
        T.USAGE,
        "48.00",
        description="Voice: 480 min x 0.10",
        quantity=D(480),
        unit="min",
        unit_price=D("0.10"),
    )
    _line(statement, 3, T.DISCOUNT, "-25.20", description="Loyalty 7.24%")
    _line(statement, 4, T.TAX, "32.28", description="VAT 10%")
    UsageSummary.objects.create(
        statement=statement,
        service_identifier="+44 7700 900123",
        usage_type="voice",
        quantity=D(780),
        unit="min",
        included_quantity=D(1000),
    )
    FinancialTransaction.objects.create(
        account=acct,
        kind=FinancialTransaction.Kind.PAYMENT,
        amount=D("-100.00"),
        currency="USD",
        effective_date=dt.date(2026, 10, 20),
        posted_at=timezone.now(),
        description="Card payment",
        statement=statement,
    )
    FinancialTransaction.objects.create(
        account=acct,
        kind=FinancialTransaction.Kind.BILL,
        amount=D("355.08"),
        currency="USD",
        effective_date=BILL_DATE,
        posted_at=timezone.now(),
        description="Bill S-000348",
        biller=engine_biller(),
        statement=statement,
    )
    StatementMessage.objects.create(statement=statement, position=1, text="Thank you for being a customer.")
    return statement


def hierarchy_bill(*, child_lines=(2, 2, 60)) -> Statement:
    """A paying parent (Business) with three non-paying children; each child has this many lines on the
    parent's bill (the third one more than the default threshold of 50: it is summarized)."""
    parent = account(name="Acme Holdings", type=Account.Type.BUSINESS, email="ap@acme.example")
    children = [
        account(name=f"Acme Branch {i}", parent=parent, is_paying=False, type=Account.Type.BUSINESS)
        for i in (1, 2, 3)
    ]
    total_lines = sum(child_lines) + 1
    amount_each = D("10.00")
    new_charges = amount_each * total_lines
    statement = _statement(parent, number=_free_number("S-HIER01"), new_charges=new_charges, taxes=D("0"))
    position = 1
    _line(
        statement,
        position,
        StatementLine.Type.RECURRING,
        "10.00",
        product="Head office line",
        identifier="HQ-1",
        account=parent,
    )
    for child, count in zip(children, child_lines, strict=True):
        for i in range(count):
            position += 1
            _line(
                statement,
                position,
                StatementLine.Type.RECURRING,
                "10.00",
                product=f"Line {i % 3}",
                identifier=f"{child.number}-{i % 4}",
                account=child,
            )
    return statement
