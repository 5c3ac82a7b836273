"""Subscriptions: create, change (dates, sequence, jurisdiction, suspend and resume) and cancel.

Every write checks, under locks, what makes a subscription billable, and raises ApplicationError with field
errors otherwise (the admin form and the API show them on their fields):

* the price plan is active and bills in the currency of the account's bill unit (the account, or the paying
  parent whose bill carries it: its billing profile's currency);
* start <= end; a cancelled subscription keeps an end date;
* no other subscription of the same service identifier is in service on any of the same days (usage records
  name the identifier: two subscriptions on one day would make a record's subscription ambiguous);
* the billing term scheme is of the plan's kind: a prepaid plan takes prepaid schemes only and a normal plan
  normal ones (a plan's scheme says how its prices are meant to be paid; a subscription may choose another
  scheme of the same kind, not switch between post-paid bills and a wallet);
* each recurring component of the plan has a price for the subscription's billing frequency on its start day
  (else rating would stop at once with ``no_price``);
* once periods are rated (or billed), the start date stays: periods are counted from it. The end date may
  move before a period already billed: the rating engine credits the days no longer in service.

Locks: the service identifier (a PostgreSQL advisory lock for the transaction, taken first, so two concurrent
writes for one identifier cannot both pass the overlap check), then the subscription row, the plan row and the
bill unit's billing profile row (the checked currency and activity cannot change before commit).
``check_new_subscription`` and ``check_subscription_change`` are the same checks for the admin form, which
validates inside the admin's transaction and then saves through these services.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from django.db import connection, transaction

from accounts.models import Account, BillingProfile
from accounts.selectors import paying_account
from billing_mgmt.audit import audit_record, snapshot
from billing_mgmt.errors import ApplicationError, Conflict

from ..models import (
    BillingFrequency,
    BillingTermScheme,
    BillSegment,
    PlanComponent,
    Price,
    PricePlan,
    Subscription,
    TaxJurisdiction,
    UsageRecord,
    UsageToRate,
)
from .catalog import FieldErrors, span, spans_overlap

UPDATABLE = ("start_date", "end_date", "processing_sequence", "tax_jurisdiction", "status")
_VOLATILE = ("created_at", "updated_at")


@dataclass(frozen=True)
class SubscriptionTerms:
    """What a new subscription gets when the caller leaves a choice to the defaults."""

    frequency: BillingFrequency
    billing_term_scheme: BillingTermScheme


def _raise(errors: FieldErrors, what: str = "The subscription is not valid") -> None:
    if errors:
        fields = errors.errors
        first = next(iter(fields.values()))[0]
        message = f"{what}: {first}" if sum(len(v) for v in fields.values()) == 1 else f"{what}."
        raise ApplicationError(message, fields=fields)


def lock_service_identifier(identifier: str) -> None:
    """Serialize every subscription write for one service identifier until the transaction ends.

    A row lock cannot guard the overlap check: the subscription that would clash may not exist yet. On
    SQLite (the embedded demo) writes are serialized by the database itself.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_advisory_xact_lock(hashtext(%s))", [f"billruns.subscription:{identifier}"]
            )


def _bill_unit_profile(account: Account, *, lock: bool) -> BillingProfile | None:
    unit = paying_account(account=account)
    profiles = BillingProfile.objects.filter(account_id=unit.pk)
    if lock:
        profiles = profiles.select_for_update(no_key=True)
    return profiles.first()


def _account_label(account: Account, unit_profile: BillingProfile) -> str:
    if unit_profile.account_id == account.pk:
        return f"account {account.number}"
    return f"account {account.number} (billed on account {unit_profile.account.number})"


def _overlap_errors(
    errors: FieldErrors,
    *,
    identifier: str,
    start: dt.date | None,
    end: dt.date | None,
    exclude_pk: int | None = None,
) -> None:
    if not identifier or start is None or (end is not None and end < start):
        return
    others = Subscription.objects.filter(service_identifier=identifier).select_related("price_plan")
    if exclude_pk is not None:
        others = others.exclude(pk=exclude_pk)
    for other in others.order_by("start_date", "pk"):
        if spans_overlap(start, end, other.start_date, other.end_date):
            errors.add(
                "service_identifier",
                f"{identifier} already has subscription {other.pk} on {other.price_plan.name} "
                f"{span(other.start_date, other.end_date)}, which overlaps these dates.",
            )
            return


def _date_errors(errors: FieldErrors, start: dt.date | None, end: dt.date | None) -> None:
    if start is not None and end is not None and end < start:
        errors.add(
            "end_date", f"The end date ({end.isoformat()}) is before the start date ({start.isoformat()})."
        )


def _frequency_price_errors(
    errors: FieldErrors, *, plan: PricePlan, frequency: BillingFrequency, start: dt.date | None
) -> None:
    if start is None:
        return
    components = PlanComponent.objects.filter(plan=plan, kind=PlanComponent.Kind.RECURRING).order_by(
        "position", "id"
    )
    priced = set(
        Price.objects.filter(component__plan=plan, frequency=frequency, valid_from__lte=start)
        .exclude(valid_to__lt=start)
        .values_list("component_id", flat=True)
    )
    for component in components:
        if component.pk not in priced:
            errors.add(
                "frequency",
                f"Price plan {plan.name} has no {frequency.name.lower()} price for {component.name} on "
                f"{start.isoformat()}: choose another billing frequency or add the price.",
            )
            return


@transaction.atomic
def check_new_subscription(
    *,
    account: Account,
    price_plan: PricePlan,
    service_identifier: str,
    start_date: dt.date,
    end_date: dt.date | None = None,
    frequency: BillingFrequency | None = None,
    billing_term_scheme: BillingTermScheme | None = None,
    processing_sequence: int = 100,
) -> SubscriptionTerms:
    """Lock and check a new subscription; return the frequency and scheme it gets (defaults resolved).

    Raises ApplicationError with every field error found. Called inside the caller's transaction, the locks
    hold until it commits (the admin validates, then saves with ``subscription_create`` in one transaction).
    """
    errors = FieldErrors()
    identifier = (service_identifier or "").strip()
    if not identifier:
        errors.add("service_identifier", "Give the service identifier (a phone number, a meter, a circuit).")
    else:
        lock_service_identifier(identifier)
    plan = (
        PricePlan.objects.select_for_update(no_key=True, of=("self",))
        .select_related("billing_term_scheme")
        .get(pk=price_plan.pk)
    )
    profile = _bill_unit_profile(account, lock=True)
    if account.status == Account.Status.CLOSED:
        errors.add("account", f"Account {account.number} is closed: it takes no new subscriptions.")
    if profile is None:
        errors.add("account", f"Account {account.number} has no billing profile (its bill unit has none).")
    if not plan.active:
        errors.add("price_plan", f"Price plan {plan.name} is inactive: it takes no new subscriptions.")
    if profile is not None and plan.currency != profile.currency:
        errors.add(
            "price_plan",
            f"Price plan {plan.name} is in {plan.currency} but {_account_label(account, profile)} bills in "
            f"{profile.currency}: choose a plan in {profile.currency}.",
        )
    _date_errors(errors, start_date, end_date)
    if processing_sequence is not None and processing_sequence < 0:
        errors.add("processing_sequence", "Must not be negative.")

    if frequency is None and profile is not None:
        frequency = BillingFrequency.objects.filter(code=profile.billing_frequency).first()
        if frequency is None:
            errors.add(
                "frequency",
                f"The account's billing frequency '{profile.billing_frequency}' is not in the catalog: "
                "choose a billing frequency.",
            )
    scheme = billing_term_scheme or plan.billing_term_scheme
    if not scheme.active:
        errors.add("billing_term_scheme", f"Billing term scheme {scheme.name} is inactive.")
    elif scheme.kind != plan.billing_term_scheme.kind:
        plan_kind = plan.billing_term_scheme.get_kind_display().lower()
        errors.add(
            "billing_term_scheme",
            f"Price plan {plan.name} is {plan_kind}: its subscriptions take a {plan_kind} billing term "
            f"scheme, not {scheme.name}.",
        )
    if frequency is not None:
        _frequency_price_errors(errors, plan=plan, frequency=frequency, start=start_date)
    _overlap_errors(errors, identifier=identifier, start=start_date, end=end_date)
    _raise(errors)
    assert frequency is not None  # a missing one is an error above
    return SubscriptionTerms(frequency=frequency, billing_term_scheme=scheme)


def _state(subscription: Subscription) -> dict[str, Any]:
    return {k: v for k, v in snapshot(subscription).items() if k not in _VOLATILE}


@transaction.atomic
def subscription_create(
    *,
    account: Account,
    price_plan: PricePlan,
    service_identifier: str,
    start_date: dt.date,
    end_date: dt.date | None = None,
    frequency: BillingFrequency | None = None,
    billing_term_scheme: BillingTermScheme | None = None,
    processing_sequence: int = 100,
    tax_jurisdiction: TaxJurisdiction | None = None,
    actor: Any,
) -> Subscription:
    """Subscribe an account to a price plan for one service identifier, from ``start_date`` (inclusive).

    ``frequency`` defaults to the billing frequency of the account's bill unit's billing profile (same codes),
    ``billing_term_scheme`` to the plan's. A subscription created with an end date is active until it.
    """
    terms = check_new_subscription(
        account=account,
        price_plan=price_plan,
        service_identifier=service_identifier,
        start_date=start_date,
        end_date=end_date,
        frequency=frequency,
        billing_term_scheme=billing_term_scheme,
        processing_sequence=processing_sequence,
    )
    subscription = Subscription.objects.create(
        account=account,
        price_plan=price_plan,
        service_identifier=service_identifier.strip(),
        start_date=start_date,
        end_date=end_date,
        status=Subscription.Status.ACTIVE,
        billing_term_scheme=terms.billing_term_scheme,
        frequency=terms.frequency,
        processing_sequence=processing_sequence,
        tax_jurisdiction=tax_jurisdiction,
    )
    audit_record(
        actor=actor,
        action="subscription.create",
        obj=subscription,
        after=_state(subscription),
        account_id=account.pk,
    )
    return subscription


def _locked(subscription: Subscription) -> Subscription:
    # The identifier never changes, so it may be read before the row is locked; its lock comes first (the
    # order every writer uses).
    lock_service_identifier(subscription.service_identifier)
    return (
        Subscription.objects.select_for_update(of=("self",))
        .select_related("price_plan")
        .get(pk=subscription.pk)
    )


def _has_rated_periods(subscription: Subscription) -> bool:
    return (
        BillSegment.objects.filter(subscription=subscription)
        .exclude(status=BillSegment.Status.ERROR)
        .exists()
    )


@transaction.atomic
def check_subscription_change(*, subscription: Subscription, data: dict[str, Any]) -> Subscription:
    """Lock the subscription and check ``data`` (fields of UPDATABLE) against it; return the locked row with
    the changes applied (not saved). Raises ApplicationError."""
    current = _locked(subscription)
    errors = FieldErrors()
    for key in data:
        if key not in UPDATABLE:
            errors.add(key, "This cannot be changed: cancel the subscription and create a new one.")
    _raise(errors)
    changed = Subscription.objects.get(pk=current.pk)  # a copy to apply the changes to
    for key, value in data.items():
        setattr(changed, key, value)

    if changed.start_date != current.start_date and _has_rated_periods(current):
        errors.add(
            "start_date",
            "Periods of this subscription are already rated: its start date cannot move (periods are counted "
            "from it). Cancel it and create a new subscription instead.",
        )
    if changed.status != current.status:
        allowed = {
            (Subscription.Status.ACTIVE, Subscription.Status.SUSPENDED),
            (Subscription.Status.SUSPENDED, Subscription.Status.ACTIVE),
        }
        if current.status == Subscription.Status.CANCELLED:
            errors.add("status", "A cancelled subscription stays cancelled: create a new subscription.")
        elif changed.status == Subscription.Status.CANCELLED:
            errors.add("status", "Cancel with an end date (the cancel action), not by changing the status.")
        elif (current.status, changed.status) not in allowed:
            errors.add("status", f"'{changed.status}' is not a subscription status.")
    if current.status == Subscription.Status.CANCELLED and changed.end_date is None:
        errors.add("end_date", "A cancelled subscription keeps an end date.")
    if changed.processing_sequence is not None and changed.processing_sequence < 0:
        errors.add("processing_sequence", "Must not be negative.")
    _date_errors(errors, changed.start_date, changed.end_date)
    if (changed.start_date, changed.end_date) != (current.start_date, current.end_date):
        _overlap_errors(
            errors,
            identifier=current.service_identifier,
            start=changed.start_date,
            end=changed.end_date,
            exclude_pk=current.pk,
        )
    _raise(errors)
    return changed


@transaction.atomic
def subscription_update(*, subscription: Subscription, data: dict[str, Any], actor: Any) -> Subscription:
    """Change a subscription's dates, processing sequence, tax jurisdiction, or suspend (status
    ``suspended``) or resume it (``active``). Only what ``data`` names changes."""
    before = _state(_locked(subscription))
    changed = check_subscription_change(subscription=subscription, data=data)
    if not data:
        return changed
    changed.save(update_fields=[*data.keys(), "updated_at"])
    after = _state(changed)
    if after != before:
        action = "subscription.update"
        if before["status"] != after["status"]:
            action = (
                "subscription.suspend"
                if after["status"] == Subscription.Status.SUSPENDED
                else "subscription.resume"
            )
        audit_record(
            actor=actor, action=action, obj=changed, before=before, after=after, account_id=changed.account_id
        )
    return changed


def _reject_usage_after_end(subscription: Subscription) -> int:
    """Usage not rated yet that falls after the new end date can never be billed: reject it, with its reason,
    so it shows in admin (and is matched again by reprocessing if the end date moves later)."""
    from .usage import OUTSIDE_SUBSCRIPTION_DATES

    # Only the records this DELETE takes off the waiting list: one a concurrent rating took (and linked) is
    # rated, and stays so.
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(
            f"DELETE FROM {quote(UsageToRate._meta.db_table)} WHERE subscription_id = %s AND event_date > %s "
            "RETURNING usage_record_id",
            [subscription.pk, subscription.end_date],
        )
        ids = [pk for (pk,) in cursor.fetchall()]
    if not ids:
        return 0
    return UsageRecord.objects.filter(pk__in=ids).update(
        status=UsageRecord.Status.REJECTED,
        subscription=None,
        subscription_ref=str(subscription.pk),
        rejection_code=OUTSIDE_SUBSCRIPTION_DATES,
        rejection_reason=f"After the subscription's end on {subscription.end_date.isoformat()}."[:300],
    )


@transaction.atomic
def subscription_cancel(*, subscription: Subscription, end_date: dt.date, actor: Any) -> Subscription:
    """End a subscription on ``end_date`` (its last day of service) and mark it cancelled.

    The end date may lie before periods already billed in advance: the next rating credits the days after
    it. It may not lie before the start date, nor make the subscription overlap another one of its service
    identifier (a later end than planned).
    """
    current = _locked(subscription)
    if current.status == Subscription.Status.CANCELLED:
        raise Conflict(
            f"The subscription is already cancelled (ended {current.end_date.isoformat()}); change its end "
            "date instead.",
            code="already_cancelled",
            fields={"status": ["Already cancelled."]},
        )
    before = _state(current)
    changed = check_subscription_change(subscription=current, data={"end_date": end_date})
    changed.status = Subscription.Status.CANCELLED
    changed.save(update_fields=["end_date", "status", "updated_at"])
    _reject_usage_after_end(changed)
    audit_record(
        actor=actor,
        action="subscription.cancel",
        obj=changed,
        before=before,
        after=_state(changed),
        account_id=changed.account_id,
    )
    return changed
