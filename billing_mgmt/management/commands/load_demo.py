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
from django.utils import timezone

from accounts.models import Account, Biller, BillerApiKey, BillingProfile, Contact
from accounts.services import account_create, biller_api_key_create, biller_reference_set, contact_add
from billing_mgmt import roles
from billing_mgmt.audit import audit_record, snapshot
from statements.models import FinancialTransaction
from statements.services import transaction_post, transaction_reverse

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
        with transaction.atomic():
            roles.ensure_roles()
            users = _ensure_users()
            by_name = {user.username: user for user, _created in users}
            if demo_loaded():
                self.stdout.write("Demo data already loaded: nothing to do.")
            else:
                loader = DemoLoader(seed=seed, actor_user=by_name["csr"])
                billers = loader.billers()
                accounts = loader.accounts(billers)
                rows = loader.ledger(accounts)
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
            if new_api_key:
                _key, raw_key = biller_api_key_create(
                    biller=Biller.objects.get(code=API_KEY_BILLER), name="demo API client", actor=ACTOR
                )
        self._print_logins(users, raw_key)

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
