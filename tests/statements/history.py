"""Builders of statement history for the CSR page tests: many months of statements with many lines, fast.

``monthly_history`` writes with bulk_create (60 statements of 50 lines in well under a second): the query
count tests need years of history, and the numbers of every row are known, so the tests can assert them.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from django.utils import timezone

from accounts.models import Account, Biller
from statements.models import Statement, StatementLine, UsageSummary
from tests.factories import statement_record


def months_back(today: dt.date, count: int) -> list[dt.date]:
    """The first day of the ``count`` months before and including today's month, oldest first."""
    index = today.year * 12 + today.month - 1
    return [dt.date(i // 12, i % 12 + 1, 1) for i in range(index - count + 1, index + 1)]


def monthly_history(
    *,
    account: Account,
    biller: Biller,
    months: int,
    lines: int = 50,
    today: dt.date | None = None,
    prefix: str = "H",
    usage: bool = True,
) -> list[Statement]:
    """One statement per month for ``months`` months ending in today's month, dated the 1st, with ``lines``
    lines on five services: per line 10.00 recurring, except every fifth line is usage (2.50, 25 min at
    0.10). Tax 0.80 per line. Usage summaries: voice 100 min and data 1000 MB per statement."""
    today = today or timezone.localdate()
    now = timezone.now()
    statements = []
    for i, month in enumerate(months_back(today, months)):
        charges = Decimal(0)
        for n in range(lines):
            charges += Decimal("2.50") if n % 5 == 4 else Decimal("10.00")
        taxes = Decimal("0.80") * lines
        # Dated the 1st, so that even the current month's statement is not in the future.
        date = month
        previous_month = (month - dt.timedelta(days=1)).replace(day=1)
        statements.append(
            Statement(
                number=f"{prefix}-{biller.pk}-{i + 1:04d}",
                account=account,
                biller=biller,
                external_id=f"{prefix}-{i + 1}",
                statement_date=date,
                period_start=previous_month,
                period_end=month - dt.timedelta(days=1),
                due_date=date + dt.timedelta(days=20),
                currency="USD",
                new_charges=charges,
                taxes=taxes,
                total_due=charges + taxes,
                status=Statement.Status.PAID if i < months - 1 else Statement.Status.OPEN,
                channel="api",
                content_hash=f"{prefix}{i}",
                received_at=now,
            )
        )
    Statement.objects.bulk_create(statements, batch_size=500)
    rows = []
    summaries = []
    for statement in statements:
        for n in range(lines):
            usage_line = n % 5 == 4
            rows.append(
                StatementLine(
                    statement=statement,
                    position=n + 1,
                    line_type="usage" if usage_line else "recurring",
                    product="Calls" if usage_line else "Plan",
                    service_identifier=f"+1555000{n % 5}",
                    description=f"Line {n + 1}",
                    quantity=Decimal(25) if usage_line else Decimal(1),
                    unit="min" if usage_line else "month",
                    unit_price=Decimal("0.10") if usage_line else Decimal("10.00"),
                    amount=Decimal("2.50") if usage_line else Decimal("10.00"),
                    tax=Decimal("0.80"),
                )
            )
        if usage:
            summaries.append(
                UsageSummary(
                    statement=statement,
                    service_identifier="+15550000",
                    usage_type="voice",
                    quantity=Decimal(100),
                    unit="min",
                    included_quantity=Decimal(500),
                )  # fmt: skip
            )
            summaries.append(
                UsageSummary(
                    statement=statement,
                    service_identifier="+15550000",
                    usage_type="data",
                    quantity=Decimal(1000),
                    unit="MB",
                )  # fmt: skip
            )
    StatementLine.objects.bulk_create(rows, batch_size=2000)
    UsageSummary.objects.bulk_create(summaries, batch_size=2000)
    return statements


def _tax(amount: Decimal, rate: str) -> str:
    return str((amount * Decimal(rate)).quantize(Decimal("0.01")))


def _line(
    kind: str, product: str, service: str, quantity, unit: str, price: str, rate: str, ext: str, **extra
):
    amount = (Decimal(str(quantity)) * Decimal(price)).quantize(Decimal("0.01"))
    return {
        "type": kind, "product": product, "service_identifier": service, "quantity": str(quantity),
        "unit": unit, "unit_price": price, "amount": str(amount), "tax": _tax(amount, rate),
        "external_id": ext, **extra,
    }  # fmt: skip


def _payment(ref: str, external_id: str, amount: Decimal, date: dt.date, statement: str) -> dict:
    return {
        "type": "transaction", "account": ref, "external_id": external_id, "kind": "payment",
        "amount": str(amount), "currency": "USD", "date": date.isoformat(), "description": "AutoPay",
        "statement": statement,
    }  # fmt: skip


def two_biller_history(
    *, northwind: Biller, citypower: Biller, months: int = 24, today: dt.date | None = None
) -> None:
    """A household's phone and electricity bills, through the ingest service as billers send them: two
    phone lines at Northwind (plans, calls, data, a device instalment, a discount) and a meter at City
    Power (a service charge, kWh by season, a tax line). Every statement is paid at the biller except City
    Power's last two (the older one overdue). References: NW-1 and CP-1."""
    from statements.services import ingest_records

    today = today or timezone.localdate()
    nw_records, cp_records = [], []
    nw_previous = cp_previous = Decimal(0)
    cp_unpaid = Decimal(0)
    for i, month in enumerate(months_back(today, months)):
        last = i == months - 1
        period_end = month - dt.timedelta(days=1)
        period_start = period_end.replace(day=1)
        minutes = 120 + (i * 37) % 140
        gigabytes = 3 + (i * 7) % 9
        lines = [
            _line("recurring", "Unlimited Talk & Text", "+1 555 0100", 1, "month", "45.00", "0.08",
                  f"NW{i}-1", description="Monthly plan"),
            _line("recurring", "Data 10 GB", "+1 555 0101", 1, "month", "30.00", "0.08", f"NW{i}-2",
                  description="Monthly plan"),
            _line("usage", "International calls", "+1 555 0100", minutes, "min", "0.10", "0.08", f"NW{i}-3",
                  description="Calls to Canada and Mexico"),
            _line("usage", "Roaming data", "+1 555 0101", gigabytes * 10, "MB", "0.05", "0.08", f"NW{i}-4",
                  description="Data abroad"),
            _line("discount", "Loyalty discount", "+1 555 0100", 1, "month", "-5.00", "0.08", f"NW{i}-5"),
        ]  # fmt: skip
        if i < 12:
            lines.append(
                _line("one_time", "Phone instalment", "+1 555 0101", 1, "each", "25.00", "0.08", f"NW{i}-6",
                      description=f"Instalment {i + 1} of 12")
            )  # fmt: skip
        nw = statement_record(
            "NW-1", f"NW-{month:%Y%m}", number=f"NW-{month:%Y%m}-0042",
            statement_date=month.isoformat(), period_start=period_start.isoformat(),
            period_end=period_end.isoformat(), due_date=(month + dt.timedelta(days=21)).isoformat(),
            previous_balance=str(nw_previous), payments=str(nw_previous), lines=lines,
            usage=[
                {"service_identifier": "+1 555 0100", "usage_type": "voice", "quantity": str(minutes * 3),
                 "unit": "min", "included_quantity": "1000"},
                {"service_identifier": "+1 555 0101", "usage_type": "data", "quantity": str(gigabytes * 1024),
                 "unit": "MB", "included_quantity": "10240"},
                {"service_identifier": "+1 555 0100", "usage_type": "sms", "quantity": str(40 + i * 3),
                 "unit": "msg"},
            ],
            status="open" if last else "paid",
        )  # fmt: skip
        nw_records.append(nw)
        nw_previous = Decimal(nw["total_due"]) - Decimal(nw["previous_balance"]) + Decimal(nw["payments"])
        if not last:
            paid_on = month + dt.timedelta(days=15)
            nw_records.append(_payment("NW-1", f"NWP-{month:%Y%m}", nw_previous, paid_on, nw["external_id"]))
        winter = month.month in (12, 1, 2)
        summer = month.month in (6, 7, 8)
        kwh = 620 + (280 if winter else 160 if summer else 0) + (i * 13) % 60
        energy = (Decimal(kwh) * Decimal("0.15")).quantize(Decimal("0.01"))
        cp_lines = [
            {"type": "recurring", "product": "Service charge", "service_identifier": "MTR-88213",
             "quantity": "1", "unit": "month", "unit_price": "12.00", "amount": "12.00", "tax": "0.00",
             "external_id": f"CP{i}-1"},
            {"type": "usage", "product": "Energy", "service_identifier": "MTR-88213", "quantity": str(kwh),
             "unit": "kWh", "unit_price": "0.15", "amount": str(energy), "tax": "0.00",
             "description": "Residential rate", "external_id": f"CP{i}-2"},
            {"type": "tax", "product": "State utility tax", "service_identifier": "",
             "amount": _tax(energy + Decimal("12.00"), "0.05"), "external_id": f"CP{i}-3"},
        ]  # fmt: skip
        unpaid_months = i >= months - 2
        cp = statement_record(
            "CP-1", f"CP-{month:%Y%m}", number=f"CP{month:%y%m}7731",
            statement_date=month.isoformat(), period_start=period_start.isoformat(),
            period_end=period_end.isoformat(), due_date=(month + dt.timedelta(days=14)).isoformat(),
            previous_balance=str(cp_previous), payments=str(cp_previous - cp_unpaid), lines=cp_lines,
            usage=[{"service_identifier": "MTR-88213", "usage_type": "electricity", "quantity": str(kwh),
                    "unit": "kWh"}],
            status=("open" if last else "overdue") if unpaid_months else "paid",
        )  # fmt: skip
        cp_records.append(cp)
        charges = Decimal(cp["new_charges"]) + Decimal(cp["taxes"])
        if unpaid_months:
            cp_unpaid += charges
        else:
            paid_on = month + dt.timedelta(days=10)
            cp_records.append(_payment("CP-1", f"CPP-{month:%Y%m}", charges, paid_on, cp["external_id"]))
        cp_previous = Decimal(cp["total_due"])
    for biller, records in ((northwind, nw_records), (citypower, cp_records)):
        results = ingest_records(biller=biller, records=records)
        rejected = [r.as_dict() for r in results if r.status != "accepted"]
        assert not rejected, rejected


def make_statement(
    *,
    account: Account,
    biller: Biller,
    statement_date: dt.date,
    new_charges: str = "0.00",
    taxes: str = "0.00",
    total_due: str | None = None,
    lines: list[tuple[str, str]] = (),
    usage: list[tuple[str, str, str]] = (),
    **fields,
) -> Statement:
    """One statement written directly, with ``lines`` as (line_type, amount) and ``usage`` as (usage_type,
    unit, quantity): for tests that choose every number."""
    count = Statement.objects.filter(biller=biller).count() + 1
    statement = Statement.objects.create(
        number=fields.pop("number", f"T-{biller.pk}-{count}"),
        account=account,
        biller=biller,
        external_id=fields.pop("external_id", f"T-{count}"),
        statement_date=statement_date,
        period_start=fields.pop("period_start", statement_date - dt.timedelta(days=30)),
        period_end=fields.pop("period_end", statement_date - dt.timedelta(days=1)),
        due_date=fields.pop("due_date", statement_date + dt.timedelta(days=14)),
        currency=fields.pop("currency", "USD"),
        new_charges=Decimal(new_charges),
        taxes=Decimal(taxes),
        total_due=Decimal(total_due) if total_due is not None else Decimal(new_charges) + Decimal(taxes),
        content_hash="x",
        received_at=fields.pop("received_at", timezone.now()),
        **fields,
    )
    StatementLine.objects.bulk_create(
        StatementLine(statement=statement, position=i, line_type=line_type, amount=Decimal(amount))
        for i, (line_type, amount) in enumerate(lines, start=1)
    )
    UsageSummary.objects.bulk_create(
        UsageSummary(
            statement=statement,
            service_identifier=f"svc-{i}",
            usage_type=usage_type,
            unit=unit,
            quantity=Decimal(quantity),
        )  # fmt: skip
        for i, (usage_type, unit, quantity) in enumerate(usage)
    )
    return statement
