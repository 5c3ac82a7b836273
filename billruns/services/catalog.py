"""The catalog's rules, shared by Django admin and the API, and the API's catalog write
(``price_plan_create``).

One approach for every rule: a ``validate_*`` function checks values (model instances, saved or not, so an
admin form's probe and the unsaved rows of an API request are checked alike) and raises
``django.core.exceptions.ValidationError`` with a dict of field errors. Keys are the checked object's field
names; a rule over a list names the item ``name[i].field`` (``tiers[2].from_quantity``,
``prices[1].valid_to``), ``i`` being the item's position in the list given (messages count from 1: "tier 3").
Admin forms put each error on its field (billruns.admin.catalog.add_errors, add_formset_errors); the API
prefixes the path of the object in the request (``components[0].prices[1].tiers[2].from_quantity``). A rule is
written once and says the same in both.

The rules:

* prices of one component for one billing frequency never overlap in time (both ends inclusive, an empty end
  runs forever), nor do the tax rates of one (category, jurisdiction);
* a price fits its component: recurring has ``frequency`` + ``amount``; one-time ``amount``; usage per unit
  ``unit_price``; graduated and volume have tiers and nothing else;
* tiers start at 0 and follow each other (each starts where the one below ends), each ``from < to``, and only
  the last (which must be) is open-ended: so every unit has exactly one price;
* a component has the settings of its kind and no others (recurring: timing; usage: usage type and rating
  method, included units; one-time: trigger); a plan rates each usage type in one component;
* a discount: a percentage in (0, 100]; a fixed amount in the currency of what it applies to; one target;
* amounts in a currency have no more places than its minor unit; nothing is negative.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from decimal import Decimal
from itertools import pairwise
from typing import Any

from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db import transaction

from accounts.selectors import paying_account
from billing_mgmt.audit import audit_record, snapshot
from billing_mgmt.errors import ApplicationError
from billing_mgmt.money import CurrencyError, is_quantized, minor_units, validate_currency

from ..models import Discount, PlanComponent, Price, PricePlan, PriceTier, TaxRate

NOT_NEGATIVE = "Must not be negative."
TIERED = (PlanComponent.RatingMethod.GRADUATED, PlanComponent.RatingMethod.VOLUME)


# --- collecting errors -------------------------------------------------------------------------------------


def error_dict(exc: ValidationError) -> dict[str, list[str]]:
    """A ValidationError's messages by field (whole-object errors under NON_FIELD_ERRORS)."""
    if hasattr(exc, "error_dict"):
        return exc.message_dict
    return {NON_FIELD_ERRORS: exc.messages}


def join_path(prefix: str, field: str) -> str:
    """``components[0].`` + ``prices[1].valid_to``; a whole-object error is named by the object's path."""
    if field == NON_FIELD_ERRORS:
        return prefix.rstrip(".") or NON_FIELD_ERRORS
    return f"{prefix}{field}"


class FieldErrors:
    """Field errors collected from several rules, raised together as one ValidationError."""

    def __init__(self) -> None:
        self.errors: dict[str, list[str]] = {}

    def __bool__(self) -> bool:
        return bool(self.errors)

    def add(self, field: str, message: str) -> None:
        messages = self.errors.setdefault(field, [])
        if message not in messages:
            messages.append(message)

    def collect(self, rule, *args, prefix: str = "", **kwargs) -> bool:
        """Run a rule; keep its errors under ``prefix``. True when it passed."""
        try:
            rule(*args, **kwargs)
        except ValidationError as exc:
            for field, messages in error_dict(exc).items():
                for message in messages:
                    self.add(join_path(prefix, field), message)
            return False
        return True

    def raise_if_any(self) -> None:
        if self.errors:
            raise ValidationError({k: list(v) for k, v in self.errors.items()})


# --- small helpers -----------------------------------------------------------------------------------------


def fmt(value: Decimal) -> str:
    """1000.000000 -> "1000", 0.050000 -> "0.05": quantities and prices as people write them."""
    return f"{value.normalize():f}"


def span(valid_from: dt.date, valid_to: dt.date | None) -> str:
    if valid_to is None:
        return f"from {valid_from.isoformat()} with no end"
    return f"from {valid_from.isoformat()} to {valid_to.isoformat()}"


def spans_overlap(a_from: dt.date, a_to: dt.date | None, b_from: dt.date, b_to: dt.date | None) -> bool:
    """Two inclusive date spans (an empty end runs forever) share a day."""
    return (b_to is None or a_from <= b_to) and (a_to is None or b_from <= a_to)


def _overlap_field(item_from: dt.date, other_from: dt.date) -> str:
    # An item that starts inside the other one has a wrong start; one that starts before it runs into it.
    return "valid_from" if other_from <= item_from else "valid_to"


def _check_dates(errors: FieldErrors, valid_from: dt.date | None, valid_to: dt.date | None) -> None:
    if valid_from is not None and valid_to is not None and valid_to < valid_from:
        errors.add(
            "valid_to", f"The end ({valid_to.isoformat()}) is before the start ({valid_from.isoformat()})."
        )


def _check_money(errors: FieldErrors, field: str, amount: Decimal | None, currency: str | None) -> None:
    if amount is None:
        return
    if amount < 0:
        errors.add(field, NOT_NEGATIVE)
        return
    if currency:
        try:
            if not is_quantized(amount, currency):
                places = minor_units(currency)
                errors.add(field, f"A {currency} amount has at most {places} decimal places.")
        except CurrencyError:
            pass  # the currency itself is reported on its own field


def _same(a, b) -> bool:
    return a is b or (a.pk is not None and a.pk == b.pk)


# --- components --------------------------------------------------------------------------------------------


def validate_component(component: PlanComponent) -> None:
    """A component has the settings of its kind and none of the others'."""
    errors = FieldErrors()
    kind = component.kind
    is_recurring = kind == PlanComponent.Kind.RECURRING
    is_usage = kind == PlanComponent.Kind.USAGE
    is_one_time = kind == PlanComponent.Kind.ONE_TIME
    if kind not in PlanComponent.Kind.values:
        errors.add("kind", "Choose recurring, usage or one-time.")
    if is_recurring and not component.timing:
        errors.add("timing", "A recurring component is charged in advance or in arrears: choose one.")
    if not is_recurring and component.timing:
        errors.add("timing", "Only recurring components have a timing: leave it empty.")
    if is_usage:
        if component.usage_type_id is None:
            errors.add("usage_type", "A usage component rates one usage type: choose it.")
        if not component.rating_method:
            errors.add(
                "rating_method", "A usage component needs a rating method: per unit, graduated or volume."
            )
    else:
        if component.usage_type_id is not None:
            errors.add("usage_type", "Only usage components have a usage type: leave it empty.")
        if component.rating_method:
            errors.add("rating_method", "Only usage components have a rating method: leave it empty.")
    included = component.included_quantity
    if included is not None and included < 0:
        errors.add("included_quantity", NOT_NEGATIVE)
    elif included and not is_usage:
        errors.add("included_quantity", "Only usage components have included units: leave it at 0.")
    if is_one_time and not component.trigger:
        errors.add("trigger", "A one-time component is charged on activation or on termination: choose one.")
    if not is_one_time and component.trigger:
        errors.add("trigger", "Only one-time components have a trigger: leave it empty.")
    errors.raise_if_any()


def validate_component_set(components: Sequence[PlanComponent]) -> None:
    """The components of one plan: codes differ, and each usage type is rated by one component only (the
    engine finds a usage record's component by its usage type)."""
    errors = FieldErrors()
    codes: dict[str, int] = {}
    usage_types: dict[int, int] = {}
    for i, component in enumerate(components):
        if component.code:
            if component.code in codes:
                first = codes[component.code]
                errors.add(
                    f"components[{i}].code", f"Component {first + 1} already has the code '{component.code}'."
                )
            else:
                codes[component.code] = i
        if component.kind == PlanComponent.Kind.USAGE and component.usage_type_id is not None:
            if component.usage_type_id in usage_types:
                first = usage_types[component.usage_type_id]
                errors.add(
                    f"components[{i}].usage_type",
                    f"Component {first + 1} ('{components[first].code}') already rates "
                    f"{component.usage_type}: a plan rates each usage type in one component.",
                )
            else:
                usage_types[component.usage_type_id] = i
    errors.raise_if_any()


# --- prices ------------------------------------------------------------------------------------------------


def validate_price_values(price: Price) -> None:
    """What a price must be whatever its component: dates in order, nothing negative."""
    errors = FieldErrors()
    _check_dates(errors, price.valid_from, price.valid_to)
    _check_money(errors, "amount", price.amount, None)
    if price.unit_price is not None and price.unit_price < 0:
        errors.add("unit_price", NOT_NEGATIVE)
    errors.raise_if_any()


def validate_price_fit(
    price: Price, *, component: PlanComponent, currency: str | None, tiers: Sequence[PriceTier] | None = None
) -> None:
    """The price has what its component's kind needs and nothing else. ``tiers=None``: not checked here (the
    admin checks a price's tiers in the tiers' formset, beside them)."""
    errors = FieldErrors()
    kind, method = component.kind, component.rating_method
    is_tiered = kind == PlanComponent.Kind.USAGE and method in TIERED
    if kind == PlanComponent.Kind.RECURRING:
        if price.frequency_id is None:
            errors.add("frequency", "A recurring price is for one billing frequency: choose it.")
        if price.amount is None:
            errors.add("amount", "A recurring price needs an amount for one whole period.")
    elif price.frequency_id is not None:
        errors.add("frequency", "Only recurring prices have a billing frequency: leave it empty.")
    if kind == PlanComponent.Kind.ONE_TIME and price.amount is None:
        errors.add("amount", "A one-time price needs an amount.")
    if kind == PlanComponent.Kind.USAGE:
        if price.amount is not None:
            errors.add(
                "amount", "A usage price has no amount: per unit it has a unit price, tiered it has tiers."
            )
        if method == PlanComponent.RatingMethod.PER_UNIT and price.unit_price is None:
            errors.add("unit_price", "A per-unit usage price needs a unit price.")
        if is_tiered and price.unit_price is not None:
            errors.add("unit_price", f"A {method} price is priced by its tiers: leave the unit price empty.")
    elif price.unit_price is not None:
        errors.add("unit_price", "Only per-unit usage prices have a unit price: this one has an amount.")
    if price.amount is not None and price.amount >= 0 and currency:
        _check_money(errors, "amount", price.amount, currency)
    if tiers is not None:
        if is_tiered and not tiers:
            errors.add("tiers", f"A {method} price needs tiers: at least one, starting at 0.")
        if not is_tiered and tiers:
            errors.add("tiers", "Only graduated and volume usage prices have tiers.")
    errors.raise_if_any()


def validate_price(
    price: Price, *, component: PlanComponent, currency: str | None, tiers: Sequence[PriceTier] | None = None
) -> None:
    errors = FieldErrors()
    if errors.collect(validate_price_values, price):
        errors.collect(validate_price_fit, price, component=component, currency=currency, tiers=tiers)
    errors.raise_if_any()


def _price_overlap_message(other: Price) -> str:
    billing = f" ({other.frequency.name.lower()} billing)" if other.frequency_id is not None else ""
    return (
        f"Overlaps the price valid {span(other.valid_from, other.valid_to)}{billing}: "
        "end one the day before the other starts."
    )


def _prices_clash(price: Price, other: Price) -> bool:
    return (
        price.frequency_id == other.frequency_id
        and price.valid_from is not None
        and other.valid_from is not None
        and spans_overlap(price.valid_from, price.valid_to, other.valid_from, other.valid_to)
    )


def validate_price_overlaps(price: Price, others: Iterable[Price]) -> None:
    """The price against the other prices of its component (the price itself may be among them)."""
    for other in others:
        if not _same(price, other) and _prices_clash(price, other):
            field = _overlap_field(price.valid_from, other.valid_from)
            raise ValidationError({field: [_price_overlap_message(other)]})


def validate_price_set(prices: Sequence[Price]) -> None:
    """All prices of one component: none overlaps an earlier one in the list for the same frequency."""
    errors = FieldErrors()
    for i, price in enumerate(prices):
        for other in prices[:i]:
            if _prices_clash(price, other):
                field = _overlap_field(price.valid_from, other.valid_from)
                errors.add(f"prices[{i}].{field}", _price_overlap_message(other))
                break
    errors.raise_if_any()


# --- tiers -------------------------------------------------------------------------------------------------


def validate_tier(tier: PriceTier) -> None:
    """One tier on its own: bounds not negative and in order, the unit price not negative."""
    errors = FieldErrors()
    low, high = tier.from_quantity, tier.to_quantity
    if low is not None and low < 0:
        errors.add("from_quantity", NOT_NEGATIVE)
    if high is not None and high < 0:
        errors.add("to_quantity", NOT_NEGATIVE)
    elif high is not None and low is not None and low >= 0 and high <= low:
        errors.add("to_quantity", f"The upper bound must be above the lower bound ({fmt(low)}).")
    if tier.unit_price is not None and tier.unit_price < 0:
        errors.add("unit_price", NOT_NEGATIVE)
    errors.raise_if_any()


def validate_tier_sequence(tiers: Sequence[PriceTier]) -> None:
    """The tiers of one price, in any order: they start at 0 and each starts where the one below ends; only
    the highest is open-ended, and it must be. Each tier on its own is assumed valid (validate_tier)."""
    if not tiers:
        return
    errors = FieldErrors()
    order = sorted(range(len(tiers)), key=lambda i: tiers[i].from_quantity)
    lowest = order[0]
    if tiers[lowest].from_quantity != 0:
        errors.add(
            f"tiers[{lowest}].from_quantity",
            f"Tier {lowest + 1} is the lowest and must start at 0, not {fmt(tiers[lowest].from_quantity)}.",
        )
    for below_i, i in pairwise(order):
        below, tier = tiers[below_i], tiers[i]
        if below.to_quantity is None:
            errors.add(
                f"tiers[{below_i}].to_quantity",
                f"Only the last tier may be open-ended: tier {below_i + 1} has no upper bound but tier "
                f"{i + 1} starts at {fmt(tier.from_quantity)}.",
            )
        elif tier.from_quantity < below.to_quantity:
            errors.add(
                f"tiers[{i}].from_quantity",
                f"Tier {i + 1} starts at {fmt(tier.from_quantity)} but tier {below_i + 1} ends at "
                f"{fmt(below.to_quantity)} (overlap).",
            )
        elif tier.from_quantity > below.to_quantity:
            errors.add(
                f"tiers[{i}].from_quantity",
                f"Tier {i + 1} starts at {fmt(tier.from_quantity)} but tier {below_i + 1} ends at "
                f"{fmt(below.to_quantity)} (gap: the units between have no price).",
            )
    highest = order[-1]
    if tiers[highest].to_quantity is not None:
        errors.add(
            f"tiers[{highest}].to_quantity",
            f"The last tier must be open-ended (leave its upper bound empty), or units above "
            f"{fmt(tiers[highest].to_quantity)} have no price.",
        )
    errors.raise_if_any()


def validate_tiers(tiers: Sequence[PriceTier]) -> None:
    """Each tier, then (when each is valid) the sequence."""
    errors = FieldErrors()
    each_valid = all(
        [errors.collect(validate_tier, tier, prefix=f"tiers[{i}].") for i, tier in enumerate(tiers)]
    )
    if each_valid:
        errors.collect(validate_tier_sequence, tiers)
    errors.raise_if_any()


# --- taxes -------------------------------------------------------------------------------------------------


def validate_tax_rate(rate: TaxRate, others: Iterable[TaxRate] = ()) -> None:
    """A percent from 0 to 100, dates in order, and no overlap with the other rates of the same category in
    the same jurisdiction (``others`` may hold any rates; the rate itself may be among them)."""
    errors = FieldErrors()
    if rate.rate is not None:
        if rate.rate < 0:
            errors.add("rate", NOT_NEGATIVE)
        elif rate.rate > 100:
            errors.add("rate", "A percent from 0 to 100.")
    _check_dates(errors, rate.valid_from, rate.valid_to)
    if not errors and rate.valid_from is not None:
        for other in others:
            if (
                _same(rate, other)
                or other.category_id != rate.category_id
                or other.jurisdiction_id != rate.jurisdiction_id
            ):
                continue
            if spans_overlap(rate.valid_from, rate.valid_to, other.valid_from, other.valid_to):
                errors.add(
                    _overlap_field(rate.valid_from, other.valid_from),
                    f"Overlaps the {other.name} rate of {fmt(other.rate)}% valid "
                    f"{span(other.valid_from, other.valid_to)}: end one the day before the other starts.",
                )
                break
    errors.raise_if_any()


# --- discounts ---------------------------------------------------------------------------------------------

_TARGETS = ("price_plan", "subscription", "account")


def discount_target_currency(discount: Discount) -> tuple[str, str] | None:
    """(currency, what bills in it) of the discount's target: the plan's currency, the subscription's plan's,
    or the account's bill unit's billing currency."""
    if discount.price_plan_id is not None:
        return discount.price_plan.currency, f"price plan {discount.price_plan.code}"
    if discount.subscription_id is not None:
        return (
            discount.subscription.price_plan.currency,
            f"subscription {discount.subscription.service_identifier}",
        )
    if discount.account_id is not None:
        unit = paying_account(account=discount.account)
        profile = getattr(unit, "billing_profile", None)
        if profile is not None:
            return profile.currency, f"account {discount.account.number}"
    return None


def validate_discount(discount: Discount) -> None:
    errors = FieldErrors()
    targets = [name for name in _TARGETS if getattr(discount, f"{name}_id") is not None]
    if not targets:
        errors.add(
            "price_plan", "Choose what the discount applies to: a price plan, a subscription or an account."
        )
    elif len(targets) > 1:
        for name in targets:
            errors.add(
                name, "A discount applies to one of a price plan, a subscription and an account: choose one."
            )
    value = discount.value
    if discount.kind == Discount.Kind.PERCENTAGE:
        if value is not None and value < 0:
            errors.add("value", NOT_NEGATIVE)
        elif value is not None and not 0 < value <= 100:
            errors.add("value", f"A percentage is above 0 and at most 100, not {fmt(value)}.")
        if discount.currency:
            errors.add("currency", "A percentage has no currency: leave it empty.")
    elif discount.kind == Discount.Kind.FIXED:
        target = discount_target_currency(discount) if len(targets) == 1 else None
        if value is not None and value == 0:
            errors.add("value", "A fixed discount is an amount above 0.")
        if not discount.currency:
            hint = f" ({target[0]}, as {target[1]})" if target else ""
            errors.add("currency", f"A fixed discount is an amount in one currency: give it{hint}.")
        else:
            try:
                validate_currency(discount.currency)
            except CurrencyError as exc:
                errors.add("currency", str(exc))
            else:
                if target is not None and discount.currency != target[0]:
                    errors.add(
                        "currency",
                        f"{target[1][0].upper()}{target[1][1:]} bills in {target[0]}: "
                        f"a fixed discount on it is in {target[0]} too.",
                    )
        _check_money(errors, "value", value, discount.currency if "currency" not in errors.errors else None)
    _check_dates(errors, discount.valid_from, discount.valid_to)
    errors.raise_if_any()


# --- the API's write: a whole price plan -------------------------------------------------------------------

PLAN_FIELDS = ("code", "name", "product", "currency", "billing_term_scheme", "description", "active")
COMPONENT_FIELDS = (
    "code",
    "name",
    "kind",
    "position",
    "timing",
    "usage_type",
    "rating_method",
    "included_quantity",
    "trigger",
    "tax_category",
)
PRICE_FIELDS = ("frequency", "valid_from", "valid_to", "amount", "unit_price")
TIER_FIELDS = ("from_quantity", "to_quantity", "unit_price")


def _build(model, data: dict[str, Any], fields: Sequence[str], **extra):
    values = {name: data[name] for name in fields if name in data}
    for name, field in ((f, model._meta.get_field(f)) for f in fields):
        # Text fields are never NULL: an empty choice ("no timing") arrives as "" or None.
        if values.get(name, "") is None and not field.null:
            values[name] = field.get_default()
    return model(**values, **extra)


def _plan_state(plan: PricePlan, components: list[tuple[PlanComponent, list[tuple[Price, list[PriceTier]]]]]):
    return {
        **snapshot(plan),
        "components": [
            {
                **snapshot(component),
                "prices": [
                    {**snapshot(price), "tiers": [snapshot(t) for t in tiers]} for price, tiers in prices
                ],
            }
            for component, prices in components
        ],
    }


@transaction.atomic
def price_plan_create(*, data: dict[str, Any], actor: Any) -> PricePlan:
    """Create a price plan with its components, their prices and the prices' tiers, all or nothing.

    ``data``: the plan's fields (``product`` and ``billing_term_scheme`` as instances, as an API serializer
    resolves them), and ``components``: a list of the component's fields (``usage_type``, ``tax_category`` as
    instances, ``position`` defaults to the list order) with ``prices``: a list of price fields
    (``frequency`` an instance) with ``tiers``: a list of ``from_quantity``, ``to_quantity``, ``unit_price``.

    Every rule of this module is checked first; on any error nothing is stored and ApplicationError carries
    every error by path (``components[0].prices[1].tiers[2].from_quantity``).
    """
    errors = FieldErrors()
    plan = _build(PricePlan, data, PLAN_FIELDS)
    if plan.code and PricePlan.objects.filter(code=plan.code).exists():
        errors.add("code", f"A price plan with the code '{plan.code}' already exists.")
    currency: str | None = plan.currency
    try:
        validate_currency(plan.currency)
    except CurrencyError as exc:
        errors.add("currency", str(exc))
        currency = None
    if plan.product_id is not None and not plan.product.active:
        errors.add("product", f"Product {plan.product.code} is inactive.")
    if plan.billing_term_scheme_id is not None and not plan.billing_term_scheme.active:
        errors.add("billing_term_scheme", f"Billing term scheme {plan.billing_term_scheme.code} is inactive.")

    built: list[tuple[PlanComponent, list[tuple[Price, list[PriceTier]]]]] = []
    component_rows = data.get("components") or []
    if not component_rows:
        errors.add("components", "A price plan needs at least one component.")
    for i, row in enumerate(component_rows):
        prefix = f"components[{i}]."
        component = _build(PlanComponent, {"position": i, **row}, COMPONENT_FIELDS)
        component_valid = errors.collect(validate_component, component, prefix=prefix)
        prices: list[tuple[Price, list[PriceTier]]] = []
        price_rows = row.get("prices") or []
        if not price_rows:
            errors.add(f"{prefix}prices", "A component needs at least one price.")
        for j, price_row in enumerate(price_rows):
            price_prefix = f"{prefix}prices[{j}]."
            price = _build(Price, price_row, PRICE_FIELDS)
            tiers = [_build(PriceTier, tier_row, TIER_FIELDS) for tier_row in price_row.get("tiers") or []]
            if errors.collect(validate_price_values, price, prefix=price_prefix) and component_valid:
                errors.collect(
                    validate_price_fit,
                    price,
                    component=component,
                    currency=currency,
                    tiers=tiers,
                    prefix=price_prefix,
                )
            errors.collect(validate_tiers, tiers, prefix=price_prefix)
            prices.append((price, tiers))
        errors.collect(validate_price_set, [price for price, _ in prices], prefix=prefix)
        built.append((component, prices))
    errors.collect(validate_component_set, [component for component, _ in built])

    if errors:
        fields = errors.errors
        first = next(iter(fields.values()))[0]
        message = (
            f"The price plan is not valid: {first}" if len(fields) == 1 else "The price plan is not valid."
        )
        raise ApplicationError(f"{message} Nothing was stored.", fields=fields)

    plan.save()
    for component, prices in built:
        component.plan = plan
        component.save()
        for price, tiers in prices:
            price.component = component
            price.save()
            for tier in tiers:
                tier.price = price
            PriceTier.objects.bulk_create(tiers)
    audit_record(actor=actor, action="price_plan.create", obj=plan, after=_plan_state(plan, built))
    return plan
