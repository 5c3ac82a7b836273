"""Demo data for trying the product: accounts in hierarchies, billers, ledger rows and one login per role.

Idempotent: the first run loads everything in one transaction; later runs only make sure the demo users exist
and print the logins. The data is random but seeded, so every install gets the same accounts. Everything is
written through the services (numbering, validation and audit apply), as a person or a biller would.

This module sits in the composition root (billing_mgmt) because it uses several apps.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from accounts.models import Account, Biller, BillerApiKey, BillerReference, BillingProfile, Contact
from accounts.services import account_create, biller_api_key_create, biller_reference_set, contact_add
from billing_mgmt import roles
from billing_mgmt.audit import audit_record, snapshot
from billing_mgmt.demo_cases import demo_cases_loaded, load_demo_cases
from billing_mgmt.demo_engine import EngineLoad, engine_demo_loaded, load_engine_demo
from billing_mgmt.demo_runs import load_run_definitions, run_demo_runs, runs_demo_loaded
from billing_mgmt.money import quantize
from statements.models import Channel, FinancialTransaction, Statement
from statements.services import ingest_records, transaction_post, transaction_reverse
from statements.services.pull_schedule import biller_pull_schedule_sync

DEMO_SEED = 20250101
DEMO_PASSWORD = "demo-pass-123"  # published on purpose: load_demo refuses to run with DEBUG off
ACTOR = "load_demo"

INTERNAL_BILLER = {"code": "acme", "name": "ACME Billing", "kind": Biller.Kind.INTERNAL}
EXTERNAL_BILLERS = (
    {"code": "northwind", "name": "Northwind Telecom Billing", "kind": Biller.Kind.EXTERNAL},
    {"code": "globex", "name": "Globex Utilities Billing", "kind": Biller.Kind.EXTERNAL},
)
REFERENCE_FORMATS = {"acme": "AC{:06d}", "northwind": "NW-{:07d}", "globex": "GLX{:06d}"}
API_KEY_BILLER = "northwind"


@dataclass(frozen=True)
class DemoUser:
    username: str
    role: str
    is_staff: bool = False
    first_name: str = ""
    last_name: str = ""


DEMO_USERS = (
    DemoUser("csr", roles.CSR, first_name="Casey", last_name="Rep"),
    DemoUser("supervisor", roles.SUPERVISOR, first_name="Sam", last_name="Lead"),
    DemoUser("billing-admin", roles.BILLING_ADMIN, is_staff=True, first_name="Alex", last_name="Admin"),
    DemoUser("customer", roles.CUSTOMER, first_name="Chris", last_name="Customer"),
)

# Where the demo customers live: currency, language and locale go together, as they would in a real business.
REGIONS = {
    "US": {
        "currency": "USD",
        "language": "en",
        "locale": "en_US",
        "cities": [("New York", "NY", "10001"), ("Austin", "TX", "73301"), ("Denver", "CO", "80202")],
        "streets": ["Main Street", "Oak Avenue", "Market Street", "Elm Road"],
    },
    "GB": {
        "currency": "GBP",
        "language": "en",
        "locale": "en_GB",
        "cities": [("London", "", "EC1A 1BB"), ("Manchester", "", "M1 1AE"), ("Leeds", "", "LS1 4AP")],
        "streets": ["High Street", "Station Road", "Church Lane", "Victoria Road"],
    },
    "DE": {
        "currency": "EUR",
        "language": "de",
        "locale": "de_DE",
        "cities": [("Berlin", "", "10115"), ("München", "", "80331"), ("Hamburg", "", "20095")],
        "streets": ["Hauptstraße", "Bahnhofstraße", "Schillerstraße", "Gartenweg"],
    },
    "FR": {
        "currency": "EUR",
        "language": "fr",
        "locale": "fr_FR",
        "cities": [("Paris", "", "75001"), ("Lyon", "", "69001"), ("Lille", "", "59000")],
        "streets": ["Rue de la Paix", "Avenue Victor Hugo", "Rue du Moulin", "Boulevard Voltaire"],
    },
}
FIRST_NAMES = [
    "Anna", "Ben", "Clara", "David", "Emma", "Felix", "Grace", "Hugo", "Ines", "Jonas", "Karin", "Louis",
    "Maria", "Noah", "Olivia", "Paul", "Rosa", "Simon", "Tara", "Victor", "Wendy", "Yusuf", "Zoe", "Lena",
]  # fmt: skip
LAST_NAMES = [
    "Adams", "Becker", "Clarke", "Dubois", "Evans", "Fischer", "Garcia", "Hughes", "Ibsen", "Jansen",
    "Klein", "Laurent", "Meyer", "Nguyen", "Okafor", "Petit", "Quinn", "Roux", "Schmidt", "Taylor",
]  # fmt: skip
COMPANY_WORDS = [
    "Alder", "Beacon", "Cedar", "Delta", "Ember", "Falcon", "Granite", "Harbor", "Iris", "Juniper", "Kestrel",
    "Lumen", "Meridian", "Nimbus", "Orchid", "Pioneer", "Quartz", "Summit", "Tundra", "Vertex",
]  # fmt: skip
COMPANY_SUFFIXES = {"US": "Inc.", "GB": "Ltd", "DE": "GmbH", "FR": "SARL"}


def _phone(rng: random.Random, country: str) -> str:
    # Numbers from the ranges each country reserves for fiction, so no real line is ever called.
    if country == "US":
        return f"+1 202 555 {rng.randint(100, 199):04d}"
    if country == "GB":
        return f"+44 20 7946 {rng.randint(0, 999):04d}"
    if country == "FR":
        return f"+33 1 99 00 {rng.randint(10, 99)} {rng.randint(10, 99)}"
    return f"+49 30 {rng.randint(1000000, 9999999)}"


def _cents(rng: random.Random, low: int, high: int) -> Decimal:
    """A random amount between low and high (whole currency units), exact to the cent."""
    return Decimal(rng.randint(low * 100, high * 100)).scaleb(-2)


@dataclass
class _Plan:
    """One account to create; parent is an index into the plan list."""

    name: str
    type: str
    country: str
    biller_code: str
    parent: int | None = None
    is_paying: bool = True
    person: tuple[str, str] | None = None
    extra_biller_code: str | None = None
    contacts: list[dict[str, Any]] = field(default_factory=list)


class DemoLoader:
    """Builds the demo world from a seeded random generator."""

    def __init__(self, *, seed: int, actor_user=None):
        self.rng = random.Random(seed)
        self.actor_user = actor_user
        self.today = timezone.localdate()
        self._ref_counter = 0
        self._used_names: set[str] = set()

    # -- names ------------------------------------------------------------------------------------------
    def _company(self, country: str, kind: str = "") -> str:
        while True:
            words = self.rng.sample(COMPANY_WORDS, 2)
            name = f"{words[0]} {words[1]}{(' ' + kind) if kind else ''} {COMPANY_SUFFIXES[country]}"
            if name not in self._used_names:
                self._used_names.add(name)
                return name

    def _person(self) -> tuple[str, str]:
        while True:
            person = (self.rng.choice(FIRST_NAMES), self.rng.choice(LAST_NAMES))
            if " ".join(person) not in self._used_names:
                self._used_names.add(" ".join(person))
                return person

    # -- the plan ---------------------------------------------------------------------------------------
    def plan(self) -> list[_Plan]:
        """50 accounts: 3 aggregator hierarchies (21), 4 businesses with one non-paying site each (8) and
        21 consumers."""
        plans: list[_Plan] = []
        biller_codes = [INTERNAL_BILLER["code"], *(b["code"] for b in EXTERNAL_BILLERS)]
        countries = list(REGIONS)
        for index, country in enumerate(("US", "DE", "GB")):
            biller = biller_codes[index]  # one hierarchy per biller, each in its own currency
            top = len(plans)
            plans.append(
                _Plan(self._company(country, "Group"), Account.Type.BILLING_AGGREGATOR, country, biller)
            )
            for _ in range(2):
                billing = len(plans)
                plans.append(
                    _Plan(
                        self._company(country, "Billing"), Account.Type.BILLING, country, biller, parent=top
                    )
                )
                for paying in (False, True):
                    plans.append(
                        _Plan(
                            self._company(country),
                            Account.Type.BUSINESS,
                            country,
                            biller,
                            parent=billing,
                            is_paying=paying,
                        )
                    )
        for _ in range(4):
            country = self.rng.choice(countries)
            biller = self.rng.choice(biller_codes)
            top = len(plans)
            plans.append(_Plan(self._company(country), Account.Type.BUSINESS, country, biller))
            site = f"{plans[top].name} – {self.rng.choice(REGIONS[country]['cities'])[0]} site"
            plans.append(_Plan(site, Account.Type.BUSINESS, country, biller, parent=top, is_paying=False))
        for _ in range(21):
            country = self.rng.choice(countries)
            person = self._person()
            plans.append(
                _Plan(
                    " ".join(person),
                    Account.Type.CONSUMER,
                    country,
                    self.rng.choice(biller_codes),
                    person=person,
                )
            )
        # Some customers are billed by two billers: their account page aggregates both.
        for plan in self.rng.sample([p for p in plans if p.parent is None], 6):
            plan.extra_biller_code = self.rng.choice([c for c in biller_codes if c != plan.biller_code])
        return plans

    def _profile(self, plan: _Plan, parent_profile: dict[str, Any] | None) -> dict[str, Any]:
        region = REGIONS[plan.country]
        city, state, postal = self.rng.choice(region["cities"])
        payment = self.rng.choice(BillingProfile.PaymentPreference.values)
        profile = {
            "currency": region["currency"],
            "language": region["language"],
            "locale": region["locale"],
            "bill_cycle_day": self.rng.randint(1, 28),
            "billing_frequency": self.rng.choices(BillingProfile.Frequency.values, weights=[10, 2, 3, 1, 1])[
                0
            ],
            "presentment_preference": self.rng.choice(BillingProfile.Presentment.values),
            "payment_preference": payment,
            "ar_classification": self.rng.choices(
                BillingProfile.ARClassification.values, weights=[12, 3, 2, 1, 2]
            )[0],
            "autopay": payment in ("card", "direct_debit") and self.rng.random() < 0.6,
            "payment_terms_days": self.rng.choice([14, 14, 21, 30]),
            "address_line1": f"{self.rng.randint(1, 250)} {self.rng.choice(region['streets'])}",
            "city": city,
            "region": state,
            "postal_code": postal,
            "country": plan.country,
        }
        if parent_profile is not None:
            # A hierarchy bills in one currency and cycle: children's charges roll up to the paying parent.
            for key in ("currency", "language", "locale", "bill_cycle_day", "billing_frequency"):
                profile[key] = parent_profile[key]
        return profile

    def _contacts(self, plan: _Plan, slug: str) -> list[dict[str, Any]]:
        first, last = plan.person or self._person()
        domain = self.rng.choice(["example.com", "example.net", "example.org"])
        primary = {
            "name": f"{first} {last}",
            "email": f"{first}.{last}.{slug}@{domain}".lower(),
            "phone": _phone(self.rng, plan.country),
            "role": Contact.Role.PRIMARY,
        }
        if plan.person is not None:
            copy_first, copy_last = self._person()
            copy_email = f"{copy_first}.{copy_last}.{slug}@{domain}".lower()
        else:
            copy_first, copy_last = "Accounts", "Payable"
            copy_email = f"billing.{slug}@{domain}"
        billing_copy = {
            "name": f"{copy_first} {copy_last}",
            "email": copy_email,
            "phone": _phone(self.rng, plan.country),
            "role": Contact.Role.BILLING_COPY,
        }
        return [primary, billing_copy]

    def _reference(self, biller_code: str) -> str:
        self._ref_counter += 1
        return REFERENCE_FORMATS[biller_code].format(1000 + self._ref_counter * 7)

    # -- loading ----------------------------------------------------------------------------------------
    def billers(self) -> dict[str, Biller]:
        billers = {}
        for spec in (INTERNAL_BILLER, *EXTERNAL_BILLERS):
            # Billers are configuration (admins add them in Django admin); there is no service to call.
            biller = Biller.objects.create(**spec, contact_email=f"billing-ops@{spec['code']}.example.com")
            audit_record(actor=ACTOR, action="biller.create", obj=biller, after=snapshot(biller))
            billers[biller.code] = biller
        return billers

    def accounts(self, billers: dict[str, Biller]) -> list[tuple[Account, Biller]]:
        """Create the planned accounts; return each with the biller that bills it."""
        created: list[tuple[Account, Biller]] = []
        profiles: list[dict[str, Any]] = []
        for index, plan in enumerate(self.plan()):
            parent = created[plan.parent][0] if plan.parent is not None else None
            profile = self._profile(plan, profiles[plan.parent] if plan.parent is not None else None)
            account = account_create(
                name=plan.name,
                type=plan.type,
                parent=parent,
                is_paying=plan.is_paying,
                billing_profile=profile,
                contacts=self._contacts(plan, f"a{index + 1:02d}"),
                biller=billers[plan.biller_code],
                external_ref=self._reference(plan.biller_code),
                actor=ACTOR,
            )
            if plan.extra_biller_code:
                biller_reference_set(
                    account=account,
                    biller=billers[plan.extra_biller_code],
                    external_ref=self._reference(plan.extra_biller_code),
                    actor=ACTOR,
                )
            created.append((account, billers[plan.biller_code]))
            profiles.append(profile)
        return created

    def _post(
        self,
        account: Account,
        kind: str,
        amount: Decimal,
        days_ago: int,
        description: str,
        *,
        biller: Biller | None,
        key: str,
        actor: Any = ACTOR,
    ) -> FinancialTransaction:
        """Post a row as its source would: a biller's rows carry its id, this product's an idempotency key."""
        row, _ = transaction_post(
            account=account,
            kind=kind,
            amount=amount,
            currency=account.billing_profile.currency,
            effective_date=self.today - dt.timedelta(days=days_ago),
            biller=biller,
            external_id=f"{account.number}-{key}" if biller else "",
            idempotency_key=None if biller else f"demo-{account.number}-{key}",
            description=description,
            actor=actor,
        )
        return row

    def ledger(self, accounts: list[tuple[Account, Biller]]) -> int:
        """Two bills, most payments, a few adjustments and one bounced payment, so balances show."""
        kind = FinancialTransaction.Kind
        posted = adjusted = 0
        bounced = False
        for account, biller in accounts:
            if not account.is_paying:
                continue  # a non-paying child's charges are billed on its paying parent
            source = biller if biller.kind == Biller.Kind.EXTERNAL else None  # None: billed by this product
            size = 8 if account.type == Account.Type.BILLING_AGGREGATOR else 1
            first_bill = _cents(self.rng, 20 * size, 400 * size)
            self._post(account, kind.BILL, first_bill, 62, "Bill: new charges", biller=source, key="B1")
            posted += 1
            if self.rng.random() < 0.8:
                paid = first_bill if self.rng.random() < 0.7 else (first_bill / 2).quantize(Decimal("0.01"))
                payment = self._post(
                    account, kind.PAYMENT, -paid, 40, "Payment, thank you", biller=source, key="P1"
                )
                posted += 1
                if not bounced and self.rng.random() < 0.3:
                    transaction_reverse(original=payment, reason="Payment returned by the bank", actor=ACTOR)
                    posted += 1
                    bounced = True
            second_bill = _cents(self.rng, 20 * size, 400 * size)
            self._post(account, kind.BILL, second_bill, 31, "Bill: new charges", biller=source, key="B2")
            posted += 1
            if adjusted < 5 and self.rng.random() < 0.25:
                # Entered by the demo CSR on the account page (a goodwill credit): this product's row.
                credit = -_cents(self.rng, 5, 25)
                self._post(
                    account,
                    kind.ADJUSTMENT,
                    credit,
                    12,
                    "Goodwill credit for a service outage",
                    biller=None,
                    key="ADJ1",
                    actor=self.actor_user or ACTOR,
                )
                posted += 1
                adjusted += 1
        return posted


# -- statements from the push billers ---------------------------------------------------------------------

STATEMENT_MONTHS = 24
# Push billers whose demo customers get two years of statements, and what they bill.
STATEMENT_BILLERS = {"northwind": "telecom", "globex": "energy"}
STATEMENT_ACCOUNTS = 3
STATEMENT_PREFIXES = {"northwind": "NW", "globex": "GX"}
TAX_RATES = {"US": ("Sales tax", "8.875"), "GB": ("VAT", "20"), "DE": ("MwSt.", "19"), "FR": ("TVA", "20")}
LATE_FEE = Decimal("12.50")  # charged at the biller but never sent: the demo's reconciliation difference


@dataclass
class _StatementLoad:
    accounts: list[Account] = field(default_factory=list)
    statements: int = 0
    payments: int = 0
    snapshots: int = 0
    difference_account: Account | None = None


class DemoStatements:
    """Two years of monthly statements (telecom and energy), the customers' payments at the biller and the
    billers' balance snapshots, for a few demo customers, sent through statements.services.ingest_records
    as the push API would: the ledger gets exactly what the statements say.

    One customer's latest snapshot includes a late fee the biller never sent, so the reconciliation report
    and that account's page show a difference.
    """

    def __init__(self, *, seed: int, today: dt.date | None = None):
        self.rng = random.Random(seed + STATEMENT_MONTHS)
        self.today = today or timezone.localdate()

    def targets(self) -> list[BillerReference]:
        """Paying customers of the push billers for whom that biller has posted nothing yet (their other
        billers' rows stay as they are): one per biller first, then others, by account number."""
        posted = FinancialTransaction.objects.filter(account=OuterRef("account"), biller=OuterRef("biller"))
        candidates = list(
            BillerReference.objects.filter(biller__code__in=STATEMENT_BILLERS, account__is_paying=True)
            .exclude(Exists(posted))
            .select_related("account__billing_profile", "biller")
            .order_by("account__number", "biller__code")
        )
        chosen: list[BillerReference] = []
        for code in STATEMENT_BILLERS:
            chosen.extend([ref for ref in candidates if ref.biller.code == code][:1])
        chosen.extend(ref for ref in candidates if ref not in chosen)
        return chosen[:STATEMENT_ACCOUNTS]

    def periods(self) -> list[tuple[dt.date, dt.date]]:
        """The last complete calendar months whose statement (dated three days after) is not in the future."""
        end = self.today.replace(day=1) - dt.timedelta(days=1)
        if end + dt.timedelta(days=3) > self.today:
            end = end.replace(day=1) - dt.timedelta(days=1)
        periods = []
        for _ in range(STATEMENT_MONTHS):
            start = end.replace(day=1)
            periods.append((start, end))
            end = start - dt.timedelta(days=1)
        return periods[::-1]

    def load(self) -> _StatementLoad:
        result = _StatementLoad()
        targets = self.targets()
        if not targets:
            return result
        business = [ref for ref in targets if ref.account.type != Account.Type.CONSUMER]
        with_difference = (business or targets)[-1]
        for ref in targets:
            records = self._records(ref, late_fee=LATE_FEE if ref is with_difference else Decimal(0))
            for outcome in ingest_records(
                biller=ref.biller, records=records, channel=Channel.API, actor=ACTOR
            ):
                if outcome.status != "accepted":
                    raise CommandError(f"Demo record refused: {outcome.as_dict()}")
            result.accounts.append(ref.account)
            result.statements += sum(1 for r in records if r["type"] == "statement")
            result.payments += sum(1 for r in records if r["type"] == "transaction")
            result.snapshots += sum(1 for r in records if r["type"] == "balance")
        result.difference_account = with_difference.account
        return result

    # -- one customer's records, oldest first -------------------------------------------------------------

    def _services(self, ref: BillerReference, kind: str) -> list[str]:
        business = ref.account.type != Account.Type.CONSUMER
        if kind == "energy":
            return [f"MTR-{self.rng.randint(100000, 999999)}" for _ in range(2 if business else 1)]
        return [_phone(self.rng, ref.account.billing_profile.country) for _ in range(3 if business else 2)]

    def _line(self, kind: str, product: str, amount: Decimal, **more: Any) -> dict[str, Any]:
        return {"type": kind, "product": product, "amount": str(amount), **more}

    def _metered(self, currency: str, kind: str, product: str, service: str, quantity, unit: str, price: str):
        amount = quantize(Decimal(quantity) * Decimal(price), currency)
        return self._line(
            kind,
            product,
            amount,
            service_identifier=service,
            quantity=str(quantity),
            unit=unit,
            unit_price=price,
        )

    def _telecom(self, currency: str, services: list[str], month: int) -> tuple[list, list]:
        lines: list[dict[str, Any]] = []
        usage: list[dict[str, Any]] = []
        for service in services:
            lines.append(
                self._metered(
                    currency, "recurring", "Unlimited Talk & Text 20 GB", service, 1, "month", "25.00"
                )
            )
            minutes = self.rng.randint(0, 45)
            if minutes:
                lines.append(
                    self._metered(currency, "usage", "International calls", service, minutes, "min", "0.15")
                )
            roaming = self.rng.choice([0, 0, 0, 120, 480, 950])
            if roaming:
                lines.append(
                    self._metered(currency, "usage", "Data roaming", service, roaming, "MB", "0.005")
                )
            if month == 0:
                lines.append(
                    self._line("one_time", "Activation fee", Decimal("10.00"), service_identifier=service)
                )
            elif self.rng.random() < 0.06:
                lines.append(
                    self._line("one_time", "SIM replacement", Decimal("5.00"), service_identifier=service)
                )
            lines.append(
                self._line("discount", "Loyalty discount", Decimal("-3.00"), service_identifier=service)
            )
            usage += [
                {"service_identifier": service, "usage_type": "voice", "unit": "min",
                 "quantity": str(self.rng.randint(80, 900) + minutes)},
                {"service_identifier": service, "usage_type": "data", "unit": "MB",
                 "quantity": str(self.rng.randint(2500, 19000) + roaming), "included_quantity": "20480"},
                {"service_identifier": service, "usage_type": "sms", "unit": "msg",
                 "quantity": str(self.rng.randint(10, 250))},
            ]  # fmt: skip
        return lines, usage

    def _energy(
        self, currency: str, services: list[str], month: int, period: tuple[dt.date, dt.date]
    ) -> tuple:
        lines: list[dict[str, Any]] = []
        usage: list[dict[str, Any]] = []
        start, end = period
        days = (end - start).days + 1
        winter = {12: 1.45, 1: 1.5, 2: 1.35, 3: 1.15, 11: 1.25, 10: 1.05}.get(start.month, 0.8)
        price = "0.2800" if month < 12 else "0.3100"  # the tariff went up a year ago
        for service in services:
            kwh = Decimal(int(self.rng.randint(210, 290) * winter))
            lines.append(
                self._metered(currency, "recurring", "Standing charge", service, days, "day", "0.45")
            )
            lines.append(self._metered(currency, "usage", "Electricity", service, kwh, "kWh", price))
            if month == 9:
                lines.append(
                    self._line("one_time", "Meter inspection", Decimal("15.00"), service_identifier=service)
                )
            lines.append(
                self._line("discount", "Direct debit discount", Decimal("-2.50"), service_identifier=service)
            )
            usage.append({"service_identifier": service, "usage_type": "electricity", "unit": "kWh",
                          "quantity": str(kwh)})  # fmt: skip
        return lines, usage

    def _records(self, ref: BillerReference, *, late_fee: Decimal) -> list[dict[str, Any]]:
        account, code = ref.account, ref.biller.code
        kind = STATEMENT_BILLERS[code]
        currency = account.billing_profile.currency
        tax_name, tax_rate = TAX_RATES.get(account.billing_profile.country, ("Tax", "10"))
        services = self._services(ref, kind)
        periods = self.periods()
        partial_month = len(periods) - 5  # one bill, five months ago, was paid only in part
        records: list[dict[str, Any]] = []
        previous_total = paid = Decimal(0)
        for month, period in enumerate(periods):
            start, end = period
            statement_date = end + dt.timedelta(days=3)
            due_date = statement_date + dt.timedelta(days=14)
            if kind == "energy":
                lines, usage = self._energy(currency, services, month, period)
            else:
                lines, usage = self._telecom(currency, services, month)
            charges = sum((Decimal(line["amount"]) for line in lines), Decimal(0))
            tax = quantize(charges * Decimal(tax_rate) / 100, currency)
            lines.append(self._line("tax", f"{tax_name} {tax_rate}%", tax))
            external_id = f"{ref.external_ref}-{start:%Y%m}"
            for position, line in enumerate(lines, start=1):
                line.update(period_start=start.isoformat(), period_end=end.isoformat())
                line["external_id"] = f"{external_id}-{position}"
            total = previous_total - paid + charges + tax
            pay_date = statement_date + dt.timedelta(days=10)
            payment = Decimal(0)
            if pay_date <= self.today and month < len(periods) - 1:  # the latest bill is not paid yet
                payment = quantize(total / 2, currency) if month == partial_month else total
            if payment == total:
                status = "paid"
            elif payment:
                status = "partially_paid"
            else:
                status = "overdue" if due_date < self.today else "open"
            records.append(
                {
                    "type": "statement",
                    "account": ref.external_ref,
                    "external_id": external_id,
                    "number": f"{STATEMENT_PREFIXES[code]}{start:%Y%m}-{ref.external_ref[-4:]}",
                    "statement_date": statement_date.isoformat(),
                    "period_start": start.isoformat(),
                    "period_end": end.isoformat(),
                    "due_date": due_date.isoformat(),
                    "currency": currency,
                    "previous_balance": str(previous_total),
                    "payments": str(paid),
                    "adjustments": "0",
                    "new_charges": str(charges),
                    "taxes": str(tax),
                    "total_due": str(total),
                    "status": status,
                    "lines": lines,
                    "usage": usage,
                }
            )
            if payment:
                records.append(
                    {
                        "type": "transaction",
                        "kind": "payment",
                        "account": ref.external_ref,
                        "external_id": f"{external_id}-PAY",
                        "amount": str(payment),
                        "currency": currency,
                        "date": pay_date.isoformat(),
                        "statement": external_id,
                        "description": "Direct debit" if month % 2 else "Card payment",
                    }
                )
            if month >= len(periods) - 3:
                # The biller's balance early on the statement date (the bill is dated that day).
                as_of = timezone.make_aware(dt.datetime.combine(statement_date, dt.time(0, 5)))
                records.append(self._balance(ref, currency, as_of, total))
            previous_total, paid = total, payment
        now = timezone.now().replace(second=0, microsecond=0)
        records.append(self._balance(ref, currency, now, previous_total - paid + late_fee))
        return records

    def _balance(self, ref: BillerReference, currency: str, as_of: dt.datetime, amount: Decimal) -> dict:
        return {
            "type": "balance",
            "account": ref.external_ref,
            "external_id": f"{ref.external_ref}-BAL-{as_of:%Y%m%d%H%M}",
            "as_of": as_of.isoformat(),
            "amount": str(amount),
            "currency": currency,
        }


def demo_statements_loaded() -> bool:
    return Statement.objects.filter(biller__code__in=STATEMENT_BILLERS).exists()


# -- a pulled biller: Contoso Energy, served by the fake biller (manage.py fake_biller; devserver starts it) -

PULL_BILLER = {
    "code": "contoso",
    "name": "Contoso Energy",
    "kind": Biller.Kind.EXTERNAL,
    "pull_enabled": True,
    "pull_kind": Biller.PullKind.HTTP,
    "pull_url": "http://127.0.0.1:8100/",
    "pull_interval_minutes": 60,
}
PULL_ACCOUNTS = 6


def demo_pull_biller() -> tuple[Biller, list[Account]] | None:
    """Create Contoso Energy (pulled over HTTP from the fake biller) once, with references for a few paying
    top-level customers, and its beat schedule. Its statements arrive when it is pulled (on schedule, or by
    "Refresh from billers" on one of those accounts). None when it exists already."""
    if Biller.objects.filter(code=PULL_BILLER["code"]).exists():
        return None
    biller = Biller.objects.create(**PULL_BILLER, contact_email="billing-ops@contoso.example.com")
    audit_record(actor=ACTOR, action="biller.create", obj=biller, after=snapshot(biller))
    accounts = list(
        Account.objects.filter(parent__isnull=True, is_paying=True, billing_profile__isnull=False)
        .exclude(biller_references__biller__code__in=STATEMENT_BILLERS)
        .order_by("number")[:PULL_ACCOUNTS]
    )
    for index, account in enumerate(accounts, start=1):
        reference = f"CE-{100 + index:06d}"
        biller_reference_set(account=account, biller=biller, external_ref=reference, actor=ACTOR)
    biller_pull_schedule_sync(biller=biller, actor=ACTOR)
    return biller, accounts


def _ensure_users() -> list[tuple[Any, bool]]:
    user_model = get_user_model()
    result = []
    for spec in DEMO_USERS:
        user = user_model.objects.filter(username=spec.username).first()
        created = user is None
        if created:
            user = user_model.objects.create_user(
                username=spec.username,
                email=f"{spec.username}@example.com",
                password=DEMO_PASSWORD,
                first_name=spec.first_name,
                last_name=spec.last_name,
                is_staff=spec.is_staff,
            )
        user.groups.add(Group.objects.get(name=spec.role))
        result.append((user, created))
    return result


def demo_loaded() -> bool:
    return Biller.objects.filter(code=INTERNAL_BILLER["code"]).exists()


def _payment_settings() -> None:
    """Adjustment reasons and limits, so CSRs can try adjustments (idempotent: kept as an admin left them)."""
    from django.contrib.auth.models import Group

    from payments.models import AdjustmentLimit, AdjustmentReason

    for code, name, direction in (
        ("goodwill", "Goodwill credit", "credit"),
        ("billing-error", "Billing error", "both"),
        ("late-fee-waiver", "Late fee waived", "credit"),
        ("missed-charge", "Charge missed on a bill", "debit"),
    ):
        AdjustmentReason.objects.get_or_create(code=code, defaults={"name": name, "direction": direction})
    for role, amount in ((roles.CSR, Decimal("50.00")), (roles.SUPERVISOR, Decimal("500.00"))):
        group = Group.objects.get(name=role)
        for currency in ("USD", "EUR", "GBP"):
            AdjustmentLimit.objects.get_or_create(
                role=group, currency=currency, defaults={"max_amount": amount}
            )


class Command(BaseCommand):
    help = "Load demo data once (accounts, billers, ledger rows) and make one demo login per role."

    def add_arguments(self, parser):
        parser.add_argument("--seed", type=int, default=DEMO_SEED, help="Random seed (same seed, same data).")
        parser.add_argument(
            "--new-api-key",
            action="store_true",
            help=f"Issue another API key for the '{API_KEY_BILLER}' biller.",
        )
        parser.add_argument(
            "--force",
            action="store_true",
            help="Load even with DEBUG off (the demo logins have a published password).",
        )

    def handle(self, *args, seed: int, new_api_key: bool, force: bool, **options):
        if not settings.DEBUG and not force:
            raise CommandError(
                "load_demo creates logins with a published password: it runs only with DEBUG on "
                "(or with --force on a throw-away database)."
            )
        raw_key = None
        new_runs = False
        with transaction.atomic():
            roles.ensure_roles()
            users = _ensure_users()
            by_name = {user.username: user for user, _created in users}
            if demo_loaded() and not demo_statements_loaded():
                # A demo database loaded before statements existed gets them now, once.
                self._report_statements(DemoStatements(seed=seed).load())
            elif demo_loaded():
                self.stdout.write("Demo data already loaded: nothing to do.")
            else:
                loader = DemoLoader(seed=seed, actor_user=by_name["csr"])
                billers = loader.billers()
                accounts = loader.accounts(billers)
                rows = loader.ledger(accounts)
                statements = DemoStatements(seed=seed).load()
                customer = by_name["customer"]
                consumer = next(a for a, _ in accounts if a.type == Account.Type.CONSUMER)
                contact_add(
                    account=consumer,
                    name=customer.get_full_name(),
                    email=customer.email,
                    role=Contact.Role.PORTAL_USER,
                    user=customer,
                    actor=ACTOR,
                )
                new_api_key = True
                self.stdout.write(
                    self.style.SUCCESS(
                        f"Loaded demo data: {len(billers)} billers, {len(accounts)} accounts, "
                        f"{rows} ledger rows."
                    )
                )
                self._report_statements(statements)
            if demo_loaded() and not engine_demo_loaded():
                self._report_engine(load_engine_demo(seed=seed))
            if demo_loaded() and not runs_demo_loaded():
                load_run_definitions()
                new_runs = True
            _payment_settings()
            if demo_loaded() and not demo_cases_loaded():
                cases = load_demo_cases()
                self.stdout.write(
                    self.style.SUCCESS(
                        f"Cases: {cases.cases} ({cases.disputes} with a dispute), queue at /cases/queue/"
                    )
                )
            pulled = demo_pull_biller()
            if pulled is not None:
                self.stdout.write(
                    self.style.SUCCESS(
                        f"Pulled biller {pulled[0].name} ({pulled[0].pull_url}: the fake biller) for "
                        f"accounts {', '.join(a.number for a in pulled[1])}."
                    )
                )
            if new_api_key:
                _key, raw_key = biller_api_key_create(
                    biller=Biller.objects.get(code=API_KEY_BILLER), name="demo API client", actor=ACTOR
                )
        if new_runs:
            # After the commit: a run's work is queued after commit (run here, without a worker).
            runs = run_demo_runs(seed=seed)
            prepaid = runs.prepaid_run
            self.stdout.write(
                self.style.SUCCESS(
                    "Billing runs: definitions 'Monthly billing' and 'Daily prepaid'"
                    + (
                        f"; prepaid run {prepaid.number} debited the wallet of {runs.prepaid_account.number}"
                        if prepaid
                        else ""
                    )
                    + f"; Draft run {runs.draft_run.number} to execute in Django admin."
                )
            )
        self._render_invoices()
        self._print_logins(users, raw_key)

    def _render_invoices(self) -> None:
        """Invoice every demo bill now (a worker would, after the commit; the demo shows them at once)."""
        from invoicing.services import invoices_render
        from invoicing.services.catchup import bills_without_documents

        bills = bills_without_documents()
        if not bills:
            return
        result = invoices_render(statement_ids=bills, actor=ACTOR)
        self.stdout.write(
            self.style.SUCCESS(
                f"Invoices: {len(result.rendered)} rendered (PDF, HTML, XML) for the engine's bills."
            )
        )
        if result.failed:
            self.stdout.write(
                f"  {len(result.failed)} could not be rendered: {next(iter(result.failed.values()))}"
            )

    def _report_engine(self, load: EngineLoad) -> None:
        self.stdout.write(
            self.style.SUCCESS(
                f"Billing engine: {load.plans} price plans, {load.subscriptions} subscriptions, "
                f"{load.usage_records} usage records and {load.bills} bills for accounts "
                f"{', '.join(a.number for a in load.accounts)}."
            )
        )
        if load.errors:
            self.stdout.write(
                f"  {load.errors} subscription period(s) could not be rated (a withdrawn plan): "
                "see the Subscriptions section and Bill segments in Django admin."
            )

    def _report_statements(self, load: _StatementLoad) -> None:
        if not load.accounts:
            self.stdout.write("No demo customer of a push biller to load statements for.")
            return
        self.stdout.write(
            self.style.SUCCESS(
                f"Loaded {load.statements} statements, {load.payments} payments and {load.snapshots} balance "
                f"snapshots for accounts {', '.join(a.number for a in load.accounts)}."
            )
        )
        if load.difference_account:
            self.stdout.write(
                f"  Account {load.difference_account.number}: its biller's balance differs from the ledger "
                "(see the reconciliation report in Django admin)."
            )

    def _print_logins(self, users, raw_key: str | None) -> None:
        self.stdout.write("")
        self.stdout.write("Demo logins:")
        for user, created in users:
            role = next(s.role for s in DEMO_USERS if s.username == user.username)
            password = DEMO_PASSWORD if created or user.check_password(DEMO_PASSWORD) else "(changed)"
            where = "Django admin /admin/ and CSR pages" if user.is_staff else "CSR pages"
            if role == roles.CUSTOMER:
                contact = user.contacts.select_related("account").first()
                where = f"portal, account {contact.account.number}" if contact else "portal"
            self.stdout.write(f"  {role:<14} {user.username:<14} {password:<16} {where}")
        if raw_key:
            self.stdout.write("")
            self.stdout.write(
                f"API key of the '{API_KEY_BILLER}' biller (shown once, only its hash is stored):"
            )
            self.stdout.write(f"  Authorization: Api-Key {raw_key}")
        else:
            keys = BillerApiKey.objects.filter(biller__code=API_KEY_BILLER, revoked_at__isnull=True).count()
            self.stdout.write(
                f"API keys of '{API_KEY_BILLER}': {keys} active (keys are shown only when issued; "
                "`manage.py load_demo --new-api-key` issues another)."
            )
