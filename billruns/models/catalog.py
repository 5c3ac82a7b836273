"""The catalog an admin configures: what is sold, at what price, with which taxes and discounts.

Prices are effective-dated (``Price.valid_from``/``valid_to``, both inclusive; an open end runs forever). A
component's prices for one billing frequency never overlap in time (billruns.services.catalog validates it in
admin and in the API); a change inside a billing period is prorated by day by the rating engine.
"""

from __future__ import annotations

from decimal import Decimal

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from accounts.models import Account
from billing_mgmt.money import currency_field, money_field, rate_field
from statements.models import quantity_field


def _valid_dates_in_order(prefix: str) -> models.CheckConstraint:
    return models.CheckConstraint(
        condition=Q(valid_to__isnull=True) | Q(valid_from__lte=models.F("valid_to")),
        name=f"{prefix}_valid_dates_in_order",
    )


class BillingFrequency(models.Model):
    """How often a subscription is billed: a whole number of months (monthly 1, quarterly 3, annual 12)."""

    code = models.SlugField(max_length=20, unique=True)
    name = models.CharField(max_length=60)
    months = models.PositiveSmallIntegerField(validators=[MinValueValidator(1), MaxValueValidator(24)])

    class Meta:
        ordering = ["months", "code"]
        verbose_name_plural = "billing frequencies"
        constraints = [
            models.CheckConstraint(condition=Q(months__gte=1, months__lte=24), name="frequency_months_range")
        ]

    def __str__(self) -> str:
        return self.name


class BillingTermScheme(models.Model):
    """Normal (post-paid: billed in runs, owes a bill) or prepaid (usage debits a wallet) billing terms."""

    class Kind(models.TextChoices):
        NORMAL = "normal", "Normal"
        PREPAID = "prepaid", "Prepaid"

    code = models.SlugField(max_length=30, unique=True)
    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.NORMAL)
    description = models.TextField(blank=True)
    active = models.BooleanField(default=True)

    class Meta:
        ordering = ["kind", "name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_kind_display()})"


class UsageType(models.Model):
    """A kind of usage with the one unit its records are measured in (voice in min, data in MB)."""

    code = models.SlugField(max_length=40, unique=True)
    name = models.CharField(max_length=100)
    unit = models.CharField(max_length=20, help_text="Every usage record of this type is in this unit.")

    class Meta:
        ordering = ["code"]

    def __str__(self) -> str:
        return f"{self.name} ({self.unit})"


class Product(models.Model):
    """Something sold: a mobile line, broadband, an electricity supply."""

    code = models.SlugField(max_length=40, unique=True)
    name = models.CharField(max_length=200)
    service_type = models.SlugField(
        max_length=40, help_text="Groups charges on the invoice, e.g. mobile, broadband, electricity."
    )
    description = models.TextField(blank=True)
    active = models.BooleanField(default=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "product or service"
        verbose_name_plural = "products and services"

    def __str__(self) -> str:
        return self.name


class TaxCategory(models.Model):
    """What kind of supply a charge is for tax purposes (telecom services, energy, equipment, exempt)."""

    code = models.SlugField(max_length=30, unique=True)
    name = models.CharField(max_length=100)

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "tax categories"

    def __str__(self) -> str:
        return self.name


class TaxJurisdiction(models.Model):
    """Where tax is owed. A subscription names its own; otherwise the bill unit's country and region
    (billing profile) find one, a country-wide jurisdiction (empty region) when no regional one exists."""

    code = models.SlugField(max_length=30, unique=True)
    name = models.CharField(max_length=100)
    country = models.CharField(max_length=2, blank=True, help_text="ISO 3166-1 alpha-2, e.g. US.")
    region = models.CharField(max_length=100, blank=True, help_text="State or region; empty: the country.")

    class Meta:
        ordering = ["country", "region", "name"]

    def __str__(self) -> str:
        return self.name


class TaxRate(models.Model):
    """The rate of one tax category in one jurisdiction over a time span.

    Exclusive (the default): tax is added to the charge. Inclusive: prices already contain the tax, and the
    engine shows the tax they contain (amount x rate / (100 + rate)) without adding it again.
    """

    name = models.CharField(max_length=100, help_text="As printed on the bill, e.g. 'Sales tax'.")
    category = models.ForeignKey(TaxCategory, on_delete=models.PROTECT, related_name="rates")
    jurisdiction = models.ForeignKey(TaxJurisdiction, on_delete=models.PROTECT, related_name="rates")
    rate = models.DecimalField(
        max_digits=7,
        decimal_places=4,
        validators=[MinValueValidator(Decimal(0)), MaxValueValidator(Decimal(100))],
        help_text="Percent, e.g. 8.25.",
    )
    inclusive = models.BooleanField(default=False, help_text="Prices in this category already contain it.")
    valid_from = models.DateField()
    valid_to = models.DateField(null=True, blank=True, help_text="Inclusive; empty: open-ended.")

    class Meta:
        ordering = ["jurisdiction", "category", "valid_from"]
        constraints = [
            _valid_dates_in_order("tax_rate"),
            models.CheckConstraint(condition=Q(rate__gte=0, rate__lte=100), name="tax_rate_percent_range"),
            models.UniqueConstraint(
                fields=["category", "jurisdiction", "valid_from"], name="tax_rate_one_start_per_pair"
            ),
        ]

    def __str__(self) -> str:
        kind = " incl." if self.inclusive else ""
        return f"{self.name} {self.rate.normalize():f}%{kind} ({self.jurisdiction.code}/{self.category.code})"


class PricePlan(models.Model):
    """A product's price list in one currency: its recurring, usage and one-time components."""

    code = models.SlugField(max_length=40, unique=True)
    name = models.CharField(max_length=200)
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="price_plans")
    currency = currency_field()
    billing_term_scheme = models.ForeignKey(
        BillingTermScheme,
        on_delete=models.PROTECT,
        related_name="price_plans",
        help_text="The billing terms subscriptions to this plan take by default.",
    )
    description = models.TextField(blank=True)
    active = models.BooleanField(default=True, help_text="Inactive plans take no new subscriptions.")

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.currency})"


class PlanComponent(models.Model):
    """One charge of a price plan."""

    class Kind(models.TextChoices):
        RECURRING = "recurring", "Recurring"
        USAGE = "usage", "Usage"
        ONE_TIME = "one_time", "One-time"

    class Timing(models.TextChoices):
        ADVANCE = "advance", "In advance"
        ARREARS = "arrears", "In arrears"

    class RatingMethod(models.TextChoices):
        PER_UNIT = "per_unit", "Per unit"
        GRADUATED = "graduated", "Tiered, graduated (each unit at its tier's price)"
        VOLUME = "volume", "Tiered, volume (all units at the price of the tier reached)"

    class Trigger(models.TextChoices):
        ACTIVATION = "activation", "On activation (the subscription's start)"
        TERMINATION = "termination", "On termination (the subscription's end)"

    plan = models.ForeignKey(PricePlan, on_delete=models.CASCADE, related_name="components")
    code = models.SlugField(max_length=40)
    name = models.CharField(max_length=200, help_text="As printed on the bill.")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    position = models.PositiveSmallIntegerField(default=0, help_text="Order on the bill.")
    timing = models.CharField(
        max_length=10, choices=Timing.choices, blank=True, help_text="Recurring components only."
    )
    usage_type = models.ForeignKey(
        UsageType, null=True, blank=True, on_delete=models.PROTECT, related_name="components"
    )
    rating_method = models.CharField(max_length=10, choices=RatingMethod.choices, blank=True)
    included_quantity = quantity_field(
        default=Decimal(0), help_text="Usage only: units free in each billing period (the first units)."
    )
    trigger = models.CharField(
        max_length=12, choices=Trigger.choices, blank=True, help_text="One-time components only."
    )
    tax_category = models.ForeignKey(
        TaxCategory,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="components",
        help_text="Empty: not taxed.",
    )

    class Meta:
        ordering = ["plan", "position", "id"]
        constraints = [
            models.UniqueConstraint(fields=["plan", "code"], name="component_code_unique_in_plan"),
            models.CheckConstraint(
                condition=(Q(kind="recurring") & ~Q(timing=""))
                | (Q(kind="usage") & Q(usage_type__isnull=False) & ~Q(rating_method=""))
                | (Q(kind="one_time") & ~Q(trigger="")),
                name="component_kind_settings",
            ),
            models.CheckConstraint(
                condition=Q(included_quantity__gte=0), name="component_included_not_negative"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.plan.code}/{self.code}"


class Price(models.Model):
    """A component's price over a time span.

    Recurring: ``amount`` for one whole period of ``frequency`` (a plan may price monthly and annual billing
    differently). One-time: ``amount``. Usage: ``unit_price`` (per unit) or ``tiers`` (graduated, volume).
    """

    component = models.ForeignKey(PlanComponent, on_delete=models.CASCADE, related_name="prices")
    frequency = models.ForeignKey(
        BillingFrequency,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="Recurring components: the billing frequency this amount is for.",
    )
    valid_from = models.DateField()
    valid_to = models.DateField(null=True, blank=True, help_text="Inclusive; empty: open-ended.")
    amount = money_field(null=True, blank=True)
    unit_price = rate_field(null=True, blank=True)

    class Meta:
        ordering = ["component", "frequency", "valid_from"]
        constraints = [
            _valid_dates_in_order("price"),
            # One price per start day (per frequency, for recurring components). Two partial constraints
            # rather than nulls_distinct=False, which SQLite (the embedded default) cannot enforce.
            models.UniqueConstraint(
                fields=["component", "frequency", "valid_from"],
                condition=Q(frequency__isnull=False),
                name="price_one_start_per_frequency",
            ),
            models.UniqueConstraint(
                fields=["component", "valid_from"],
                condition=Q(frequency__isnull=True),
                name="price_one_start_per_component",
            ),
            models.CheckConstraint(
                condition=Q(amount__isnull=True) | Q(amount__gte=0), name="price_amount_ge_0"
            ),
            models.CheckConstraint(
                condition=Q(unit_price__isnull=True) | Q(unit_price__gte=0), name="price_unit_price_ge_0"
            ),
        ]

    def __str__(self) -> str:
        until = f" to {self.valid_to}" if self.valid_to else ""
        return f"{self.component} from {self.valid_from}{until}"

    def covers(self, day) -> bool:
        return self.valid_from <= day and (self.valid_to is None or day <= self.valid_to)


class PriceTier(models.Model):
    """A band of a tiered usage price: units above ``from_quantity`` up to ``to_quantity`` (empty: no limit).

    Tiers start at 0 and follow each other without gap or overlap (the next tier's from is this tier's to).
    """

    price = models.ForeignKey(Price, on_delete=models.CASCADE, related_name="tiers")
    from_quantity = quantity_field()
    to_quantity = quantity_field(null=True, blank=True)
    unit_price = rate_field()

    class Meta:
        ordering = ["price", "from_quantity"]
        constraints = [
            models.UniqueConstraint(fields=["price", "from_quantity"], name="tier_one_start_per_price"),
            models.CheckConstraint(
                condition=Q(to_quantity__isnull=True) | Q(from_quantity__lt=models.F("to_quantity")),
                name="tier_bounds_in_order",
            ),
            models.CheckConstraint(condition=Q(from_quantity__gte=0), name="tier_from_not_negative"),
            models.CheckConstraint(condition=Q(unit_price__gte=0), name="tier_unit_price_ge_0"),
        ]

    def __str__(self) -> str:
        upper = self.to_quantity if self.to_quantity is not None else "∞"
        return f"{self.from_quantity}–{upper} at {self.unit_price}"


class Discount(models.Model):
    """A percentage or fixed-amount reduction on a plan, a subscription or an account, for a time span.

    Discounts apply to charges before taxes, so tax is computed on the discounted amount. A fixed amount is
    per billing period (prorated by day when it is effective for part of one) and never exceeds the charges
    it reduces.
    """

    class Kind(models.TextChoices):
        PERCENTAGE = "percentage", "Percentage"
        FIXED = "fixed", "Fixed amount per period"

    class AppliesTo(models.TextChoices):
        ALL = "all", "All charges"
        RECURRING = "recurring", "Recurring charges"
        USAGE = "usage", "Usage charges"
        ONE_TIME = "one_time", "One-time charges"

    code = models.SlugField(max_length=40, unique=True)
    name = models.CharField(max_length=200, help_text="As printed on the bill.")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    value = models.DecimalField(
        max_digits=19, decimal_places=4, help_text="Percent (e.g. 10) or an amount in the currency."
    )
    currency = currency_field(blank=True, help_text="Fixed amounts only.")
    applies_to = models.CharField(max_length=10, choices=AppliesTo.choices, default=AppliesTo.ALL)
    price_plan = models.ForeignKey(
        PricePlan, null=True, blank=True, on_delete=models.CASCADE, related_name="discounts"
    )
    subscription = models.ForeignKey(
        "billruns.Subscription", null=True, blank=True, on_delete=models.CASCADE, related_name="discounts"
    )
    account = models.ForeignKey(
        Account, null=True, blank=True, on_delete=models.CASCADE, related_name="discounts"
    )
    valid_from = models.DateField()
    valid_to = models.DateField(null=True, blank=True, help_text="Inclusive; empty: open-ended.")
    active = models.BooleanField(default=True)

    class Meta:
        ordering = ["code"]
        constraints = [
            _valid_dates_in_order("discount"),
            models.CheckConstraint(
                condition=(
                    Q(price_plan__isnull=False) & Q(subscription__isnull=True) & Q(account__isnull=True)
                )
                | (Q(price_plan__isnull=True) & Q(subscription__isnull=False) & Q(account__isnull=True))
                | (Q(price_plan__isnull=True) & Q(subscription__isnull=True) & Q(account__isnull=False)),
                name="discount_exactly_one_target",
            ),
            models.CheckConstraint(
                condition=(Q(kind="percentage") & Q(value__gt=0) & Q(value__lte=100))
                | (Q(kind="fixed") & Q(value__gt=0) & ~Q(currency="")),
                name="discount_value_valid",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def target_label(self) -> str:
        if self.price_plan_id:
            return f"plan {self.price_plan}"
        if self.subscription_id:
            return f"subscription {self.subscription}"
        return f"account {self.account}"

    def days_effective(self, start, end) -> int:
        """Days of [start, end] on which the discount is effective."""
        first = max(start, self.valid_from)
        last = end if self.valid_to is None else min(end, self.valid_to)
        return max(0, (last - first).days + 1)
