"""Admin for the catalog: billing frequencies and term schemes, usage types, products, taxes, price plans with
their components, prices and tiers, and discounts.

Django admin nests one level deep, so a plan is edited on three pages, each linked to the next:

* the price plan, with its components inline (each row links to the component's page and counts its prices);
* the component, with its prices inline (dates, frequency, amount or unit price; each row links to its page);
* the price, with its tiers inline (graduated and volume prices): a tiered price is added from its component's
  page with "Add a price with tiers", which opens the price page with the component chosen.

Every form checks the shared rules of billruns.services.catalog (the API checks the same ones): a form's own
fields in its ``clean()``, rules across rows (overlapping prices, tier gaps and overlaps, one component per
usage type) in the inline formset's ``clean()``, each error on the field or row it is about. Admin saves a
page in one transaction after every form and formset is valid, so nothing is stored on an error. Every change
writes an audit record (who changed which price from what to what).
"""

from __future__ import annotations

import copy
import re
from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db.models import Count, IntegerField, OuterRef, Subquery
from django.db.models.functions import Coalesce
from django.forms.models import BaseInlineFormSet, construct_instance
from django.urls import reverse
from django.utils.html import format_html

from billing_mgmt.audit import audit_record, snapshot
from billing_mgmt.money import CurrencyError, is_quantized, minor_units, validate_currency

from ..models import (
    BillingFrequency,
    BillingTermScheme,
    Discount,
    PlanComponent,
    Price,
    PricePlan,
    PriceTier,
    Product,
    Subscription,
    TaxCategory,
    TaxJurisdiction,
    TaxRate,
    UsageType,
)
from ..services.catalog import (
    TIERED,
    error_dict,
    fmt,
    span,
    validate_component,
    validate_component_set,
    validate_discount,
    validate_price,
    validate_price_fit,
    validate_price_overlaps,
    validate_price_set,
    validate_price_values,
    validate_tax_rate,
    validate_tier,
    validate_tier_sequence,
)

# --- shared by the billruns admin forms --------------------------------------------------------------------


def add_errors(form: forms.BaseForm, exc: ValidationError, *, note: str = "") -> None:
    """Put a rule's field errors on the form's fields (an error about a field the form does not show goes
    to the top of the form, with ``note``)."""
    for field, messages in error_dict(exc).items():
        target = field if field in form.fields else None
        for message in messages:
            text = message if target or field == NON_FIELD_ERRORS or not note else f"{message} {note}"
            form.add_error(target, text)


def probe(form: forms.ModelForm):
    """A copy of the form's instance with the cleaned values applied (for rules, inside ``clean()``)."""
    instance = copy.copy(form.instance)
    return construct_instance(form, instance, form._meta.fields, form._meta.exclude)


class RuleForm(forms.ModelForm):
    """A model form that checks its row with one of billruns.services.catalog's rules (``rule``) once the
    fields are clean, and shows the rule's errors on the fields they name."""

    rule: staticmethod | None = None

    def clean(self):
        cleaned = super().clean()
        if not self.errors and self.rule is not None:
            try:
                self.rule(probe(self))
            except ValidationError as exc:
                add_errors(self, exc)
        return cleaned


_ITEM = re.compile(r"^\w+\[(\d+)\]\.(\w+)$")


def add_formset_errors(rows: list[forms.ModelForm], exc: ValidationError) -> list[str]:
    """Put errors named ``items[i].field`` on the i-th of ``rows``; return the others (for the formset)."""
    rest: list[str] = []
    for key, messages in error_dict(exc).items():
        match = _ITEM.match(key)
        if match is None:
            rest.extend(messages)
            continue
        form, field = rows[int(match[1])], match[2]
        for message in messages:
            form.add_error(field if field in form.fields else None, message)
    return rest


def live_forms(formset) -> list[forms.ModelForm]:
    """The formset's rows that will be saved (not deleted, not empty extra rows)."""
    return [
        form
        for form in formset.forms
        if not (formset.can_delete and formset._should_delete_form(form))
        and (form.instance.pk is not None or form.has_changed())
    ]


_VOLATILE = {"created_at", "updated_at"}


def _state(obj) -> dict[str, Any]:
    return {k: v for k, v in snapshot(obj).items() if k not in _VOLATILE}


class AuditedAdmin(admin.ModelAdmin):
    """Every add, change and delete here and in the page's inlines writes an audit record, in the admin's
    transaction: ``<model>.create``, ``.update`` (before and after) and ``.delete``."""

    def _audit(self, request, action: str, obj, before=None, after=None) -> None:
        audit_record(
            actor=request.user, action=f"{obj._meta.model_name}.{action}", obj=obj, before=before, after=after
        )

    def save_model(self, request, obj, form, change):
        before = _state(type(obj).objects.select_for_update().get(pk=obj.pk)) if change else None
        super().save_model(request, obj, form, change)
        after = _state(obj)
        if before != after:
            self._audit(request, "update" if change else "create", obj, before, after)

    def delete_model(self, request, obj):
        self._audit(request, "delete", obj, before=_state(obj))
        super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        for obj in queryset:
            self._audit(request, "delete", obj, before=_state(obj))
        super().delete_queryset(request, queryset)

    def save_formset(self, request, form, formset, change):
        model = formset.model
        changed = [f.instance.pk for f in formset.initial_forms if f.instance.pk is not None]
        before = {obj.pk: _state(obj) for obj in model.objects.filter(pk__in=changed)}
        for row in formset.deleted_forms:
            if row.instance.pk is not None:
                self._audit(request, "delete", row.instance, before=before.get(row.instance.pk))
        super().save_formset(request, form, formset, change)
        for obj in formset.new_objects:
            self._audit(request, "create", obj, after=_state(obj))
        for obj, _fields in formset.changed_objects:
            after = _state(obj)
            if before.get(obj.pk) != after:
                self._audit(request, "update", obj, before.get(obj.pk), after)


def _count(model, field: str):
    """A correlated count (one subquery per list, not a join per relation)."""
    rows = model.objects.filter(**{field: OuterRef("pk")}).order_by().values(field)
    return Coalesce(Subquery(rows.annotate(n=Count("pk")).values("n")[:1], output_field=IntegerField()), 0)


def _change_url(obj) -> str:
    return reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_change", args=[obj.pk])


def tiers_text(price: Price) -> str:
    tiers = list(price.tiers.all())
    if not tiers:
        return "-"
    parts = []
    for tier in tiers:
        upper = fmt(tier.to_quantity) if tier.to_quantity is not None else "∞"
        parts.append(f"{fmt(tier.from_quantity)}–{upper} at {fmt(tier.unit_price)}")
    return "; ".join(parts)


# --- reference data ----------------------------------------------------------------------------------------


@admin.register(BillingFrequency)
class BillingFrequencyAdmin(AuditedAdmin):
    list_display = ("code", "name", "months", "subscription_count")
    search_fields = ("code", "name")

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(n_subscriptions=_count(Subscription, "frequency"))

    @admin.display(description="Subscriptions", ordering="n_subscriptions")
    def subscription_count(self, obj) -> int:
        return obj.n_subscriptions

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return ()
        # Billing profiles name frequencies by code; periods of existing subscriptions are counted in months.
        return ("code", "months") if obj.subscriptions.exists() else ("code",)


@admin.register(BillingTermScheme)
class BillingTermSchemeAdmin(AuditedAdmin):
    list_display = ("code", "name", "kind", "active")
    list_filter = ("kind", "active")
    search_fields = ("code", "name")

    def get_readonly_fields(self, request, obj=None):
        if obj is not None and (obj.price_plans.exists() or obj.subscriptions.exists()):
            # Normal or prepaid decides how subscriptions are billed: a scheme in use keeps its kind.
            return ("code", "kind")
        return ()


@admin.register(UsageType)
class UsageTypeAdmin(AuditedAdmin):
    list_display = ("code", "name", "unit")
    search_fields = ("code", "name")

    def get_readonly_fields(self, request, obj=None):
        # Usage records are in the type's unit and name it by code.
        return ("code", "unit") if obj is not None and obj.usage_records.exists() else ()


@admin.register(Product)
class ProductAdmin(AuditedAdmin):
    list_display = ("code", "name", "service_type", "active", "plan_count")
    list_filter = ("active", "service_type")
    search_fields = ("code", "name", "service_type")

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(n_plans=_count(PricePlan, "product"))

    @admin.display(description="Price plans", ordering="n_plans")
    def plan_count(self, obj) -> int:
        return obj.n_plans


@admin.register(TaxCategory)
class TaxCategoryAdmin(AuditedAdmin):
    list_display = ("code", "name")
    search_fields = ("code", "name")


@admin.register(TaxJurisdiction)
class TaxJurisdictionAdmin(AuditedAdmin):
    list_display = ("code", "name", "country", "region")
    list_filter = ("country",)
    search_fields = ("code", "name", "region")


class TaxRateForm(forms.ModelForm):
    class Meta:
        model = TaxRate
        fields = ("name", "category", "jurisdiction", "rate", "inclusive", "valid_from", "valid_to")

    def clean(self):
        cleaned = super().clean()
        if self.errors:
            return cleaned
        rate = probe(self)
        # Two admins adding rates of one jurisdiction wait for each other: both cannot pass the overlap check.
        TaxJurisdiction.objects.select_for_update().filter(pk=rate.jurisdiction_id).first()
        others = TaxRate.objects.filter(category_id=rate.category_id, jurisdiction_id=rate.jurisdiction_id)
        try:
            validate_tax_rate(rate, others.exclude(pk=rate.pk) if rate.pk else others)
        except ValidationError as exc:
            add_errors(self, exc)
        return cleaned


@admin.register(TaxRate)
class TaxRateAdmin(AuditedAdmin):
    form = TaxRateForm
    list_display = ("name", "jurisdiction", "category", "rate", "inclusive", "valid_from", "valid_to")
    list_select_related = ("jurisdiction", "category")
    list_filter = ("jurisdiction", "category", "inclusive")
    search_fields = ("name", "jurisdiction__code", "jurisdiction__name", "category__code")
    date_hierarchy = "valid_from"


# --- price plans and components ----------------------------------------------------------------------------


class PricePlanForm(forms.ModelForm):
    class Meta:
        model = PricePlan
        fields = ("code", "name", "product", "currency", "billing_term_scheme", "description", "active")

    def clean(self):
        cleaned = super().clean()
        plan, currency = self.instance, cleaned.get("currency")
        if plan.pk is None or not currency or currency == plan.currency:
            return cleaned
        try:
            validate_currency(currency)
        except CurrencyError:
            return cleaned  # the field's own validator says so
        subscriptions = plan.subscriptions.count()
        if subscriptions:
            self.add_error(
                "currency",
                f"{subscriptions} subscription(s) bill in {plan.currency} on this plan: it keeps its "
                f"currency. Create a new plan in {currency} instead.",
            )
            return cleaned
        for price in Price.objects.filter(component__plan=plan, amount__isnull=False).select_related(
            "component"
        ):
            if not is_quantized(price.amount, currency):
                self.add_error(
                    "currency",
                    f"The price of {price.component.name} {span(price.valid_from, price.valid_to)} is "
                    f"{fmt(price.amount)}: a {currency} amount has at most {minor_units(currency)} decimal "
                    "places.",
                )
                break
        fixed = plan.discounts.filter(kind=Discount.Kind.FIXED).exclude(currency=currency).first()
        if fixed is not None:
            self.add_error(
                "currency", f"Discount {fixed.code} is a fixed amount in {fixed.currency}: change it first."
            )
        return cleaned


class ComponentForm(RuleForm):
    rule = staticmethod(validate_component)

    class Meta:
        model = PlanComponent
        fields = (
            "plan",
            "position",
            "code",
            "name",
            "kind",
            "timing",
            "usage_type",
            "rating_method",
            "included_quantity",
            "trigger",
            "tax_category",
        )


def _price_fit_errors(row: forms.ModelForm, price: Price, component: PlanComponent, currency, tiers) -> None:
    try:
        validate_price_fit(price, component=component, currency=currency, tiers=tiers)
    except ValidationError as exc:
        where = "" if price.pk is None else f"The price {span(price.valid_from, price.valid_to)}: "
        for field, messages in error_dict(exc).items():
            for message in messages:
                if field in row.fields:
                    row.add_error(field, message)
                elif field == "tiers" and price.pk is None:
                    row.add_error(
                        None,
                        f"{message} Save the component without this price, then use “Add a price with tiers” "
                        "on its page, where tiers are entered with the price.",
                    )
                else:
                    row.add_error(None, f"{where}{message}")


class ComponentInlineFormSet(BaseInlineFormSet):
    """The components of a plan: the rules across them, and the existing prices of a changed component."""

    def clean(self):
        rows = live_forms(self)
        if any(row.errors for row in rows):
            return
        try:
            validate_component_set([row.instance for row in rows])
        except ValidationError as exc:
            rest = add_formset_errors(rows, exc)
            if rest:
                raise ValidationError(rest) from exc
            return
        currency = self.instance.currency
        for row in rows:
            component = row.instance
            if component.pk is None or not {"kind", "rating_method"} & set(row.changed_data):
                continue
            for price in component.prices.select_related("frequency").prefetch_related("tiers"):
                _price_fit_errors(row, price, component, currency, list(price.tiers.all()))
        super().clean()


class PlanComponentInline(admin.TabularInline):
    model = PlanComponent
    form = ComponentForm
    formset = ComponentInlineFormSet
    fields = (
        "position",
        "code",
        "name",
        "kind",
        "timing",
        "usage_type",
        "rating_method",
        "included_quantity",
        "trigger",
        "tax_category",
        "prices_link",
    )
    readonly_fields = ("prices_link",)
    show_change_link = True
    extra = 0

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(n_prices=_count(Price, "component"))

    @admin.display(description="Prices")
    def prices_link(self, obj: PlanComponent) -> str:
        if obj.pk is None:
            return "Save, then add prices"
        count = getattr(obj, "n_prices", None)
        label = f"{count} price(s): edit" if count else "No price yet: add one"
        return format_html('<a href="{}">{}</a>', _change_url(obj), label)


@admin.register(PricePlan)
class PricePlanAdmin(AuditedAdmin):
    form = PricePlanForm
    list_display = (
        "code",
        "name",
        "product",
        "currency",
        "billing_term_scheme",
        "active",
        "component_count",
        "subscription_count",
    )
    list_select_related = ("product", "billing_term_scheme")
    list_filter = ("active", "currency", "billing_term_scheme", "product")
    search_fields = ("code", "name", "product__code", "product__name")
    autocomplete_fields = ("product",)
    inlines = [PlanComponentInline]

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(
                n_components=_count(PlanComponent, "plan"), n_subscriptions=_count(Subscription, "price_plan")
            )
        )

    @admin.display(description="Components", ordering="n_components")
    def component_count(self, obj) -> int:
        return obj.n_components

    @admin.display(description="Subscriptions", ordering="n_subscriptions")
    def subscription_count(self, obj) -> int:
        return obj.n_subscriptions


# --- a component and its prices ----------------------------------------------------------------------------


class ComponentAdminForm(ComponentForm):
    def clean(self):
        cleaned = super().clean()
        if self.errors:
            return cleaned
        component = probe(self)
        siblings = list(
            PlanComponent.objects.filter(plan_id=component.plan_id)
            .exclude(pk=component.pk)
            .select_related("usage_type")
        )
        try:
            validate_component_set([*siblings, component])
        except ValidationError as exc:
            mine = f"components[{len(siblings)}]."
            for key, messages in error_dict(exc).items():
                if key.startswith(mine):
                    for message in messages:
                        self.add_error(key.removeprefix(mine), message)
        return cleaned


class PriceInlineForm(RuleForm):
    rule = staticmethod(validate_price_values)

    class Meta:
        model = Price
        fields = ("frequency", "valid_from", "valid_to", "amount", "unit_price")


class PriceInlineFormSet(BaseInlineFormSet):
    """A component's prices: each fits the component (as edited on the same page) and none overlaps another
    of the same billing frequency."""

    def clean(self):
        rows = live_forms(self)
        component = self.instance
        if any(row.errors for row in rows) or component.plan_id is None:
            return
        try:
            validate_component(component)
        except ValidationError:
            return  # the component's own form shows why
        if component.pk is not None:
            # Concurrent edits of one component's prices wait for each other (admin saves in a transaction).
            PlanComponent.objects.select_for_update().filter(pk=component.pk).first()
        prices = [row.instance for row in rows]
        tiers: dict[int, list[PriceTier]] = {}
        for tier in PriceTier.objects.filter(price__in=[p.pk for p in prices if p.pk]):
            tiers.setdefault(tier.price_id, []).append(tier)
        for row, price in zip(rows, prices, strict=True):
            _price_fit_errors(row, price, component, component.plan.currency, tiers.get(price.pk, []))
        try:
            validate_price_set(prices)
        except ValidationError as exc:
            rest = add_formset_errors(rows, exc)
            if rest:
                raise ValidationError(rest) from exc
        if not any(row.errors for row in rows):
            super().clean()


class PriceInline(admin.TabularInline):
    model = Price
    form = PriceInlineForm
    formset = PriceInlineFormSet
    fields = ("frequency", "valid_from", "valid_to", "amount", "unit_price", "tiers_summary")
    readonly_fields = ("tiers_summary",)
    show_change_link = True
    extra = 0

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("frequency").prefetch_related("tiers")

    def has_add_permission(self, request, obj=None):
        # A tiered price is entered with its tiers on the price page ("Add a price with tiers").
        if obj is not None and obj.kind == PlanComponent.Kind.USAGE and obj.rating_method in TIERED:
            return False
        return super().has_add_permission(request, obj)

    @admin.display(description="Tiers (from–to at unit price)")
    def tiers_summary(self, obj: Price) -> str:
        return tiers_text(obj) if obj.pk else "-"


@admin.register(PlanComponent)
class PlanComponentAdmin(AuditedAdmin):
    form = ComponentAdminForm
    list_display = ("__str__", "name", "plan", "kind", "settings", "tax_category", "price_count")
    list_select_related = ("plan", "usage_type", "tax_category")
    list_filter = ("kind", "rating_method", "timing", "plan")
    search_fields = ("code", "name", "plan__code", "plan__name")
    autocomplete_fields = ("plan",)
    inlines = [PriceInline]
    readonly_fields = ("add_tiered_price",)

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(n_prices=_count(Price, "component"))

    def get_fields(self, request, obj=None):
        fields = list(ComponentForm.Meta.fields)
        if obj is not None:
            fields.remove("plan")
            fields.insert(0, "plan")
            fields.append("add_tiered_price")
        return fields

    def get_readonly_fields(self, request, obj=None):
        # A component stays in its plan: subscriptions and rated lines point at it.
        return ("plan", "add_tiered_price") if obj is not None else ()

    @admin.display(description="Settings")
    def settings(self, obj: PlanComponent) -> str:
        if obj.kind == PlanComponent.Kind.RECURRING:
            return obj.get_timing_display()
        if obj.kind == PlanComponent.Kind.ONE_TIME:
            return obj.get_trigger_display()
        included = f", {fmt(obj.included_quantity)} included" if obj.included_quantity else ""
        return f"{obj.usage_type}: {obj.get_rating_method_display()}{included}"

    @admin.display(description="Prices", ordering="n_prices")
    def price_count(self, obj) -> int:
        return obj.n_prices

    @admin.display(description="Tiered prices")
    def add_tiered_price(self, obj: PlanComponent) -> str:
        if obj.pk is None or obj.kind != PlanComponent.Kind.USAGE or obj.rating_method not in TIERED:
            return "Prices are entered in the table below."
        url = f"{reverse('admin:billruns_price_add')}?component={obj.pk}"
        return format_html(
            '<a class="addlink" href="{}">Add a price with tiers</a> (tiers are entered with the price; '
            "open a price below to change its tiers)",
            url,
        )


# --- a price and its tiers ---------------------------------------------------------------------------------


class PriceAdminForm(forms.ModelForm):
    class Meta:
        model = Price
        fields = ("component", "frequency", "valid_from", "valid_to", "amount", "unit_price")

    def clean(self):
        cleaned = super().clean()
        if self.errors:
            return cleaned
        price = probe(self)
        if price.component_id is None:
            return cleaned
        component = (
            PlanComponent.objects.select_for_update(of=("self",))
            .select_related("plan")
            .get(pk=price.component_id)
        )
        try:
            validate_price(price, component=component, currency=component.plan.currency)
            others = Price.objects.filter(component=component).select_related("frequency")
            validate_price_overlaps(price, others)
        except ValidationError as exc:
            add_errors(self, exc)
        return cleaned


class TierForm(RuleForm):
    rule = staticmethod(validate_tier)

    class Meta:
        model = PriceTier
        fields = ("from_quantity", "to_quantity", "unit_price")


class TierFormSet(BaseInlineFormSet):
    """A price's tiers: as many as its component's rating method needs, starting at 0, each starting where the
    one below ends, the last open-ended."""

    def clean(self):
        rows = live_forms(self)
        if any(row.errors for row in rows):
            return
        tiers = [row.instance for row in rows]
        price = self.instance
        component = price.component if price.component_id is not None else None
        problems: list[str] = []
        if component is not None:
            try:
                validate_price_fit(price, component=component, currency=None, tiers=tiers)
            except ValidationError as exc:
                problems.extend(error_dict(exc).get("tiers", []))
        try:
            validate_tier_sequence(tiers)
        except ValidationError as exc:
            problems.extend(add_formset_errors(rows, exc))
        if problems:
            raise ValidationError(problems)
        if not any(row.errors for row in rows):
            super().clean()


class PriceTierInline(admin.TabularInline):
    model = PriceTier
    form = TierForm
    formset = TierFormSet
    fields = ("from_quantity", "to_quantity", "unit_price")
    verbose_name = "tier"
    verbose_name_plural = (
        "Tiers (graduated and volume prices): units above “from” up to “to”; the first starts at 0, each "
        "next one starts where the one before ends, the last has no “to”"
    )

    def get_extra(self, request, obj=None, **kwargs):
        return 3 if obj is None else 1


@admin.register(Price)
class PriceAdmin(AuditedAdmin):
    form = PriceAdminForm
    list_display = ("__str__", "plan", "frequency", "valid_from", "valid_to", "amount", "unit_price", "tiers")
    list_select_related = ("component__plan", "frequency")
    list_filter = ("component__kind", "frequency", "component__plan")
    search_fields = ("component__code", "component__name", "component__plan__code", "component__plan__name")
    autocomplete_fields = ("component",)
    inlines = [PriceTierInline]

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("tiers")

    def get_readonly_fields(self, request, obj=None):
        return ("component",) if obj is not None else ()

    def get_inlines(self, request, obj):
        # Tiers belong to graduated and volume prices; a new price may be either (its component is chosen on
        # the same page).
        if obj is None or obj.tiers.exists():
            return self.inlines
        component = obj.component
        return (
            self.inlines
            if component.kind == PlanComponent.Kind.USAGE and component.rating_method in TIERED
            else []
        )

    @admin.display(description="Plan", ordering="component__plan__code")
    def plan(self, obj: Price) -> str:
        return obj.component.plan.code

    @admin.display(description="Tiers")
    def tiers(self, obj: Price) -> str:
        return tiers_text(obj)


# --- discounts ---------------------------------------------------------------------------------------------


class DiscountForm(RuleForm):
    rule = staticmethod(validate_discount)

    class Meta:
        model = Discount
        fields = (
            "code",
            "name",
            "kind",
            "value",
            "currency",
            "applies_to",
            "price_plan",
            "subscription",
            "account",
            "valid_from",
            "valid_to",
            "active",
        )


@admin.register(Discount)
class DiscountAdmin(AuditedAdmin):
    form = DiscountForm
    list_display = (
        "code",
        "name",
        "kind",
        "value",
        "currency",
        "applies_to",
        "target",
        "valid_from",
        "valid_to",
        "active",
    )
    list_select_related = ("price_plan", "subscription__price_plan", "account")
    list_filter = ("kind", "applies_to", "active")
    search_fields = (
        "code",
        "name",
        "price_plan__code",
        "=subscription__service_identifier",
        "=account__number",
    )
    autocomplete_fields = ("price_plan", "subscription", "account")

    @admin.display(description="Applies to")
    def target(self, obj: Discount) -> str:
        return obj.target_label
