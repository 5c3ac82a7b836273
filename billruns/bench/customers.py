"""The benchmark's synthetic customer base, the same for the same seed, built in sets.

What it holds (docs/benchmarks.md):

* three billers: the engine's own (internal: it bills) and two external ones; every account has a reference
  at one of the external billers, as accounts of an aggregator do;
* N accounts, each with a billing profile (USD, bill cycle day 1, an address in Texas, California or New
  York); about 10% are non-paying children of a paying account (a fifth of those one level deeper), so
  their charges go on the paying ancestor's bill;
* a catalog of three mobile plans: a monthly fee in advance, voice usage on graduated tiers with included
  minutes, data per MB; every component in the telecom tax category, taxed at the rate of the subscriber's
  jurisdiction (TX and CA rates, and a country-wide US rate for the rest);
* two subscriptions per account, starting ``months`` months before the bill-as-of date (15% of them some days
  into their first month, so their first fee is prorated);
* 30 usage records per subscription per month (20 calls, 10 data sessions), accepted and waiting for
  rating, dated inside the months before the bill-as-of date.

Catalog rows are configuration (few rows, the ORM); accounts, profiles, references and subscriptions go in
with bulk_create, usage records with COPY (hundreds of thousands of rows). Subscriptions and usage are
written directly, not through their services: the data is valid by construction and the services' per-row
checks would make the build, not the run, the thing measured.
"""

from __future__ import annotations

import datetime as dt
import random
import time
import zoneinfo
from dataclasses import asdict, dataclass
from decimal import Decimal

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from accounts.models import Account, Biller, BillerReference, BillingProfile
from accounts.services import ACCOUNT_SERIES
from billing_mgmt.numbering import next_numbers

from ..models import (
    BillingFrequency,
    BillingTermScheme,
    PlanComponent,
    Price,
    PricePlan,
    PriceTier,
    Product,
    Subscription,
    TaxCategory,
    TaxJurisdiction,
    TaxRate,
    UsageRecord,
    UsageToRate,
    UsageType,
)
from ..periods import add_months

EPOCH = dt.date(2000, 1, 1)
CHILD_SHARE = 0.10
GRANDCHILD_SHARE = 0.20  # of the children
LATE_START_SHARE = 0.15
HEAVY_CALLER_SHARE = 0.15
CALLS_PER_MONTH = 20
DATA_SESSIONS_PER_MONTH = 10
USAGE_SOURCE = "bench-mediation"
REGIONS = (("TX", 0.5), ("CA", 0.3), ("NY", 0.2))

# code, name, monthly fee, voice: included minutes and graduated tiers (from, to, price), data price per MB
PLANS = [
    ("bench-mobile-s", "Mobile S", "15.00", "100", [("0", "500", "0.06"), ("500", None, "0.04")], "0.01"),
    ("bench-mobile-m", "Mobile M", "30.00", "300", [("0", "1000", "0.05"), ("1000", None, "0.03")], "0.005"),
    ("bench-mobile-l", "Mobile L", "55.00", "1000", [("0", "2000", "0.04"), ("2000", None, "0.02")], "0.002"),
]  # fmt: skip
PLAN_WEIGHTS = (0.4, 0.4, 0.2)
# jurisdiction code, name, country, region, rate (percent)
JURISDICTIONS = [
    ("bench-us-tx", "Texas", "US", "TX", "8.25"),
    ("bench-us-ca", "California", "US", "CA", "7.25"),
    ("bench-us", "United States", "US", "", "5.00"),
]


@dataclass(frozen=True)
class BaseSpec:
    accounts: int
    seed: int
    months: int
    bill_as_of: dt.date
    # Every profile's presentment preference (so every invoice detailed, or every one a summary); empty: a
    # random mix of all of them.
    presentment: str = ""

    def describe(self) -> str:
        described = (
            f"accounts={self.accounts};seed={self.seed};months={self.months};"
            f"bill_as_of={self.bill_as_of.isoformat()}"
        )
        return f"{described};presentment={self.presentment}" if self.presentment else described


@dataclass
class BuiltBase:
    """What the build made (the JSON report's ``build``)."""

    accounts: int = 0
    bill_units: int = 0
    children: int = 0
    subscriptions: int = 0
    usage_records: int = 0
    billers: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)


def _catalog() -> dict:
    monthly = BillingFrequency.objects.get(code="monthly")
    standard = BillingTermScheme.objects.get(code="standard")
    telecom = TaxCategory.objects.create(code="bench-telecom", name="Telecom services")
    for code, name, country, region, rate in JURISDICTIONS:
        jurisdiction = TaxJurisdiction.objects.create(code=code, name=name, country=country, region=region)
        TaxRate.objects.create(
            name="Sales tax",
            category=telecom,
            jurisdiction=jurisdiction,
            rate=Decimal(rate),
            valid_from=EPOCH,
        )
    voice = UsageType.objects.get_or_create(code="voice", defaults={"name": "Voice", "unit": "min"})[0]
    data = UsageType.objects.get_or_create(code="data", defaults={"name": "Data", "unit": "MB"})[0]
    plans = []
    for code, name, fee, included, tiers, data_price in PLANS:
        product = Product.objects.create(code=code, name=name, service_type="mobile")
        plan = PricePlan.objects.create(
            code=code, name=name, product=product, currency="USD", billing_term_scheme=standard
        )
        component = PlanComponent.objects.create(
            plan=plan,
            code="fee",
            name="Monthly fee",
            kind=PlanComponent.Kind.RECURRING,
            timing=PlanComponent.Timing.ADVANCE,
            position=1,
            tax_category=telecom,
        )
        Price.objects.create(component=component, frequency=monthly, valid_from=EPOCH, amount=Decimal(fee))
        component = PlanComponent.objects.create(
            plan=plan,
            code="voice",
            name="Calls",
            kind=PlanComponent.Kind.USAGE,
            usage_type=voice,
            rating_method=PlanComponent.RatingMethod.GRADUATED,
            included_quantity=Decimal(included),
            position=2,
            tax_category=telecom,
        )
        price = Price.objects.create(component=component, valid_from=EPOCH)
        PriceTier.objects.bulk_create(
            PriceTier(
                price=price,
                from_quantity=Decimal(low),
                to_quantity=Decimal(high) if high is not None else None,
                unit_price=Decimal(rate),
            )
            for low, high, rate in tiers
        )
        component = PlanComponent.objects.create(
            plan=plan,
            code="data",
            name="Mobile data",
            kind=PlanComponent.Kind.USAGE,
            usage_type=data,
            rating_method=PlanComponent.RatingMethod.PER_UNIT,
            position=3,
            tax_category=telecom,
        )
        Price.objects.create(component=component, valid_from=EPOCH, unit_price=Decimal(data_price))
        plans.append(plan)
    return {"plans": plans, "monthly": monthly, "standard": standard, "voice": voice, "data": data}


def _billers() -> tuple[Biller, list[Biller]]:
    engine = Biller.objects.filter(kind=Biller.Kind.INTERNAL).order_by("pk").first() or Biller.objects.create(
        code="engine", name="Billing engine (this product)", kind=Biller.Kind.INTERNAL
    )
    external = [
        Biller.objects.get_or_create(code=code, defaults={"name": name, "kind": Biller.Kind.EXTERNAL})[0]
        for code, name in (("bench-northwind", "Northwind Telecom"), ("bench-contoso", "Contoso Energy"))
    ]
    return engine, external


def _accounts(rng: random.Random, spec: BaseSpec) -> tuple[list[int], list[int]]:
    """Create the accounts and their profiles; returns (all account ids, paying account ids)."""
    children = int(round(spec.accounts * CHILD_SHARE)) if spec.accounts >= 10 else 0
    grandchildren = int(children * GRANDCHILD_SHARE)
    paying = spec.accounts - children
    numbers = iter(next_numbers("account", ACCOUNT_SERIES, count=spec.accounts))

    def account(i: int, parent_id: int | None = None) -> Account:
        business = rng.random() < 0.15 or parent_id is not None
        return Account(
            number=next(numbers),
            name=f"{'Business' if business else 'Customer'} {i:06d}",
            type=Account.Type.BUSINESS if business else Account.Type.CONSUMER,
            parent_id=parent_id,
            is_paying=parent_id is None,
        )

    top = Account.objects.bulk_create([account(i) for i in range(paying)], batch_size=2000)
    paying_ids = [a.pk for a in top]
    level1 = Account.objects.bulk_create(
        [account(paying + i, rng.choice(paying_ids)) for i in range(children - grandchildren)],
        batch_size=2000,
    )
    level2 = Account.objects.bulk_create(
        [
            account(paying + len(level1) + i, rng.choice(level1).pk)
            for i in range(grandchildren if level1 else 0)
        ],
        batch_size=2000,
    )
    all_ids = paying_ids + [a.pk for a in level1] + [a.pk for a in level2]
    regions, weights = zip(*REGIONS, strict=True)
    cities = {"TX": "Austin", "CA": "Sacramento", "NY": "Albany"}
    profiles = []
    for pk in all_ids:
        region = rng.choices(regions, weights)[0]
        profiles.append(
            BillingProfile(
                account_id=pk,
                currency="USD",
                bill_cycle_day=1,
                presentment_preference=spec.presentment or rng.choice(BillingProfile.Presentment.values),
                payment_preference=rng.choice(BillingProfile.PaymentPreference.values),
                ar_classification=BillingProfile.ARClassification.STANDARD
                if rng.random() < 0.9
                else rng.choice(BillingProfile.ARClassification.values),
                payment_terms_days=rng.choice((14, 14, 21, 30)),
                address_line1=f"{rng.randint(1, 9999)} Main Street",
                city=cities[region],
                region=region,
                postal_code=f"{rng.randint(10000, 99999)}",
                country="US",
            )
        )
    BillingProfile.objects.bulk_create(profiles, batch_size=2000)
    return all_ids, paying_ids


def _references(rng: random.Random, account_ids: list[int], external: list[Biller]) -> None:
    BillerReference.objects.bulk_create(
        [
            BillerReference(account_id=pk, biller=biller, external_ref=f"{biller.code}-{pk:08d}")
            for pk in account_ids
            for biller in [rng.choice(external)]
        ],
        batch_size=2000,
    )


def _subscriptions(rng: random.Random, spec: BaseSpec, catalog: dict, account_ids: list[int]) -> list:
    first_month = add_months(spec.bill_as_of, -spec.months)
    rows = []
    n = 0
    for pk in account_ids:
        for sequence in (100, 200):
            n += 1
            start = first_month
            if rng.random() < LATE_START_SHARE:
                start = first_month + dt.timedelta(days=rng.randint(1, 27))
            plan = rng.choices(catalog["plans"], PLAN_WEIGHTS)[0]
            rows.append(
                Subscription(
                    account_id=pk,
                    price_plan=plan,
                    service_identifier=f"+1555{n:07d}",
                    start_date=start,
                    status=Subscription.Status.ACTIVE,
                    billing_term_scheme=catalog["standard"],
                    frequency=catalog["monthly"],
                    processing_sequence=sequence,
                )
            )
    return Subscription.objects.bulk_create(rows, batch_size=2000)


USAGE_COLUMNS = (
    "source", "external_id", "subscription", "service_identifier", "usage_type_code", "usage_type",
    "quantity", "unit", "event_time", "event_date", "status", "rejection_code", "rejection_reason",
    "subscription_ref", "received_at",
)  # fmt: skip


def _usage(rng: random.Random, spec: BaseSpec, catalog: dict, subscriptions: list[Subscription]) -> int:
    """COPY the usage records: 30 per subscription and month, accepted, in the months before bill-as-of."""
    meta = UsageRecord._meta
    columns = ", ".join(connection.ops.quote_name(meta.get_field(name).column) for name in USAGE_COLUMNS)
    sql = f"COPY {connection.ops.quote_name(meta.db_table)} ({columns}) FROM STDIN"
    zone = zoneinfo.ZoneInfo(settings.TIME_ZONE)
    voice, data = catalog["voice"], catalog["data"]
    received = timezone.now()
    months = [
        (add_months(spec.bill_as_of, -k), add_months(spec.bill_as_of, -k + 1) - dt.timedelta(days=1))
        for k in range(spec.months, 0, -1)
    ]
    count = 0
    with connection.cursor() as cursor, cursor.cursor.copy(sql) as copy:
        for sub in subscriptions:
            heavy = 4 if rng.random() < HEAVY_CALLER_SHARE else 1
            k = 0
            for month_start, month_end in months:
                first = max(month_start, sub.start_date)
                span = (month_end - first).days
                for kind in (voice,) * CALLS_PER_MONTH + (data,) * DATA_SESSIONS_PER_MONTH:
                    k += 1
                    day = first + dt.timedelta(days=rng.randint(0, span))
                    seconds = rng.randint(0, 86399)
                    when = dt.datetime.combine(
                        day, dt.time(seconds // 3600, seconds // 60 % 60, seconds % 60), tzinfo=zone
                    )
                    if kind is voice:
                        quantity = Decimal(f"{rng.uniform(0.5, 40.0) * heavy:.1f}")
                    else:
                        quantity = Decimal(f"{rng.uniform(5.0, 600.0):.2f}")
                    copy.write_row(
                        (
                            USAGE_SOURCE, f"{sub.pk}-{k}", sub.pk, sub.service_identifier, kind.code, kind.pk,
                            quantity, kind.unit, when, day, UsageRecord.Status.ACCEPTED,
                            "", "", "", received,
                        )
                    )  # fmt: skip
                    count += 1
    # What ingest does with accepted records: put them on the waiting list rating reads.
    table = connection.ops.quote_name(UsageToRate._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (usage_record_id, subscription_id, event_date, usage_type_id, quantity) "
            f"SELECT id, subscription_id, event_date, usage_type_id, quantity "
            f"FROM {connection.ops.quote_name(meta.db_table)} WHERE status = %s",
            [UsageRecord.Status.ACCEPTED],
        )
    return count


def build_customer_base(spec: BaseSpec) -> BuiltBase:
    """Fill the (migrated, empty) database the default connection points at."""
    started = time.perf_counter()
    rng = random.Random(spec.seed)
    with transaction.atomic():
        catalog = _catalog()
        engine, external = _billers()
        account_ids, paying_ids = _accounts(rng, spec)
        _references(rng, account_ids, external)
        subscriptions = _subscriptions(rng, spec, catalog, account_ids)
        usage = _usage(rng, spec, catalog, subscriptions)
    # Statistics and the visibility map, as a database that has lived would have them (clones copy both).
    with connection.cursor() as cursor:
        cursor.execute("VACUUM (ANALYZE)")
    return BuiltBase(
        accounts=len(account_ids),
        bill_units=len(paying_ids),
        children=len(account_ids) - len(paying_ids),
        subscriptions=len(subscriptions),
        usage_records=usage,
        billers=Biller.objects.count(),
        seconds=round(time.perf_counter() - started, 2),
    )
