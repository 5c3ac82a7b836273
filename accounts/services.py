"""Writes on accounts, billers and their references. Each function is one transaction with an audit record."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from billing_mgmt.audit import audit_record, snapshot
from billing_mgmt.errors import ApplicationError, Conflict
from billing_mgmt.numbering import SeriesSpec, next_number

from .models import Account, Biller, BillerApiKey, BillerReference, BillingProfile, BillingSuspension, Contact

ACCOUNT_SERIES = SeriesSpec(name="Account numbers", prefix="A", padding=8)

ACCOUNT_FIELDS = ("name", "type", "status", "parent", "is_paying")
PROFILE_FIELDS = tuple(
    f.name for f in BillingProfile._meta.concrete_fields if f.name not in ("id", "account", "updated_at")
)


def _validation_to_app_error(exc: ValidationError, prefix: str = "") -> ApplicationError:
    fields = {f"{prefix}{k}": v for k, v in exc.message_dict.items()} if hasattr(exc, "error_dict") else {}
    if not fields:
        fields = {"non_field_errors": exc.messages}
    return ApplicationError("The account is not valid.", fields=fields)


def _untimed(state: dict[str, Any]) -> dict[str, Any]:
    return {k: _untimed(v) if isinstance(v, dict) else v for k, v in state.items() if k != "updated_at"}


def check_hierarchy(account: Account, parent: Account | None) -> None:
    if parent is None:
        if not account.is_paying:
            raise ApplicationError(
                "A non-paying account needs a paying parent.", fields={"is_paying": ["A top account pays."]}
            )
        return
    seen = {account.pk} if account.pk else set()
    node: Account | None = parent
    depth = 0
    while node is not None:
        if node.pk in seen:
            raise ApplicationError(
                "The parent would make a loop.", fields={"parent": ["Loop in the hierarchy."]}
            )
        seen.add(node.pk)
        depth += 1
        if depth > Account.MAX_DEPTH:
            raise ApplicationError(
                f"Hierarchies are at most {Account.MAX_DEPTH} levels deep.", fields={"parent": ["Too deep."]}
            )
        node = node.parent


def _save_profile(account: Account, profile: dict[str, Any] | None) -> BillingProfile:
    instance = getattr(account, "billing_profile", None) if account.pk else None
    if instance is None:
        instance = BillingProfile(account=account)
    for key, value in (profile or {}).items():
        if key not in PROFILE_FIELDS:
            raise ApplicationError(
                "Unknown billing profile field.", fields={f"billing_profile.{key}": ["Unknown."]}
            )
        setattr(instance, key, value)
    try:
        instance.full_clean(exclude=["account"])
    except ValidationError as exc:
        raise _validation_to_app_error(exc, "billing_profile.") from exc
    instance.save()
    return instance


@transaction.atomic
def account_create(
    *,
    name: str,
    type: str = Account.Type.CONSUMER,
    status: str = Account.Status.ACTIVE,
    parent: Account | None = None,
    is_paying: bool = True,
    billing_profile: dict[str, Any] | None = None,
    contacts: list[dict[str, Any]] | None = None,
    biller: Biller | None = None,
    external_ref: str | None = None,
    actor: Any = None,
) -> Account:
    """Create an account with its billing profile and contacts, optionally bound to a biller's reference."""
    account = Account(
        name=name, type=type, status=status, parent=parent, is_paying=is_paying, number="pending"
    )
    # The hierarchy rules first: full_clean would report the same rules as anonymous constraint violations.
    check_hierarchy(account, parent)
    try:
        account.full_clean(exclude=["number"])
    except ValidationError as exc:
        raise _validation_to_app_error(exc) from exc
    if (
        biller is not None
        and external_ref
        and BillerReference.objects.filter(biller=biller, external_ref=external_ref).exists()
    ):
        raise Conflict(
            "This biller already has an account with that reference.",
            fields={"external_ref": ["Already used at this biller."]},
        )
    account.number = next_number("account", ACCOUNT_SERIES)
    account.save()
    _save_profile(account, billing_profile)
    for contact in contacts or []:
        contact_add(account=account, actor=actor, audit=False, **contact)
    if biller is not None and external_ref:
        biller_reference_set(
            account=account, biller=biller, external_ref=external_ref, actor=actor, audit=False
        )
    audit_record(
        actor=actor,
        action="account.create",
        obj=account,
        after={**snapshot(account), "billing_profile": snapshot(account.billing_profile)},
        account_id=account.pk,
    )
    return account


def has_money(account: Account) -> bool:
    """Whether money has moved on the account (a ledger row, a cached balance or a bill): from then on its
    billing currency is fixed, because every amount of it is in that currency (DESIGN 4: an account bills in
    one currency). Read through the reverse relations, so that accounts imports no app above it."""
    return account.transactions.exists() or account.balances.exists() or account.statements.exists()


@transaction.atomic
def account_update(
    *,
    account: Account,
    data: dict[str, Any],
    billing_profile: dict[str, Any] | None = None,
    actor: Any = None,
) -> Account:
    """Change an account's own fields and its billing profile. The number never changes."""
    account = Account.objects.select_for_update().get(pk=account.pk)
    profile = BillingProfile.objects.filter(account=account).first()
    before = {**snapshot(account), "billing_profile": snapshot(profile) if profile else None}
    for key, value in data.items():
        if key not in ACCOUNT_FIELDS:
            raise ApplicationError("This field cannot be changed.", fields={key: ["Read-only."]})
        setattr(account, key, value)
    if "parent" in data or "is_paying" in data:
        check_hierarchy(account, account.parent)
    try:
        account.full_clean(exclude=["number"])
    except ValidationError as exc:
        raise _validation_to_app_error(exc) from exc
    account.save()
    if billing_profile is not None or profile is None:
        wanted = (billing_profile or {}).get("currency")
        if profile is not None and wanted and wanted != profile.currency and has_money(account):
            raise Conflict(
                f"The account's bills and ledger are in {profile.currency}: its currency cannot change.",
                code="currency_locked",
                fields={"billing_profile.currency": ["Fixed once the account has bills or ledger rows."]},
            )
        profile = _save_profile(account, billing_profile)
    after = {**snapshot(account), "billing_profile": snapshot(profile)}
    if _untimed(after) != _untimed(before):  # saving moves updated_at even when nothing changed
        audit_record(
            actor=actor,
            action="account.update",
            obj=account,
            before=before,
            after=after,
            account_id=account.pk,
        )
    return account


@transaction.atomic
def contact_add(*, account: Account, actor: Any = None, audit: bool = True, **fields: Any) -> Contact:
    contact = Contact(account=account, **fields)
    try:
        # The one-primary rule is left to the database below (race-free, reported as a Conflict).
        contact.full_clean(validate_constraints=False)
    except ValidationError as exc:
        raise _validation_to_app_error(exc, "contacts.") from exc
    try:
        with transaction.atomic():
            contact.save()
    except IntegrityError as exc:
        raise Conflict(
            "The account already has a primary contact.", fields={"contacts.role": ["Duplicate primary."]}
        ) from exc
    if audit:
        audit_record(
            actor=actor, action="contact.create", obj=contact, after=snapshot(contact), account_id=account.pk
        )
    return contact


@transaction.atomic
def biller_reference_set(
    *, account: Account, biller: Biller, external_ref: str, actor: Any = None, audit: bool = True
) -> BillerReference:
    """Bind the account to the biller's reference (create, or change the existing one)."""
    external_ref = (external_ref or "").strip()
    if not external_ref:
        raise ApplicationError(
            "A reference is required.", fields={"external_ref": ["This field is required."]}
        )
    taken = BillerReference.objects.filter(biller=biller, external_ref=external_ref).exclude(account=account)
    if taken.exists():
        raise Conflict(
            "This reference belongs to another account.", fields={"external_ref": ["Already used."]}
        )
    try:
        with transaction.atomic():
            reference, _created = BillerReference.objects.update_or_create(
                account=account, biller=biller, defaults={"external_ref": external_ref}
            )
    except IntegrityError as exc:
        # A concurrent request took this reference between the check above and the write.
        raise Conflict(
            "This reference belongs to another account.", fields={"external_ref": ["Already used."]}
        ) from exc
    if audit:
        audit_record(
            actor=actor,
            action="biller_reference.set",
            obj=reference,
            after=snapshot(reference),
            account_id=account.pk,
        )
    return reference


@transaction.atomic
def biller_api_key_create(*, biller: Biller, name: str, actor: Any = None) -> tuple[BillerApiKey, str]:
    """Issue a key for a biller's API client. The raw key is returned once and never stored."""
    prefix, raw_key = BillerApiKey.generate()
    key = BillerApiKey.objects.create(
        biller=biller, name=name, prefix=prefix, key_hash=BillerApiKey.hash_key(raw_key)
    )
    audit_record(
        actor=actor, action="biller_api_key.create", obj=key, after={"biller": biller.code, "name": name}
    )
    return key, raw_key


@transaction.atomic
def biller_api_key_revoke(*, key: BillerApiKey, actor: Any = None) -> BillerApiKey:
    if key.revoked_at is None:
        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at"])
        audit_record(
            actor=actor,
            action="biller_api_key.revoke",
            obj=key,
            after={"revoked_at": key.revoked_at.isoformat()},
        )
    return key


# --- billing suspensions ----------------------------------------------------------------------------------


def _user(actor: Any):
    if getattr(actor, "is_authenticated", False) and not getattr(actor, "is_api_client", False):
        return actor
    return None


@transaction.atomic
def billing_suspend(*, account: Account, reason: str, reference: str = "", actor: Any) -> BillingSuspension:
    """Suspend billing of the account: billing runs skip it (exception ``billing_suspended``) until it is
    resumed. Suspending an account that is already suspended is refused (there is one open suspension)."""
    reason = (reason or "").strip()
    if not reason:
        raise ApplicationError("Say why billing is suspended.", fields={"reason": ["Required."]})
    Account.objects.select_for_update(of=("self",)).get(pk=account.pk)
    if BillingSuspension.objects.filter(account=account, ended_at__isnull=True).exists():
        raise Conflict(f"Billing of account {account.number} is already suspended.", code="already_suspended")
    suspension = BillingSuspension.objects.create(
        account=account,
        reason=reason[:300],
        reference=(reference or "")[:60],
        started_at=timezone.now(),
        started_by=_user(actor),
    )
    audit_record(
        actor=actor,
        action="billing.suspend",
        obj=suspension,
        after={"reason": suspension.reason, "reference": suspension.reference},
        account_id=account.pk,
    )
    return suspension


@transaction.atomic
def billing_resume(*, account: Account, note: str = "", actor: Any) -> BillingSuspension:
    """End the account's open billing suspension: the next billing run bills it again (from where its
    subscriptions were billed through, so the suspended period is billed then unless it was credited)."""
    Account.objects.select_for_update(of=("self",)).get(pk=account.pk)
    suspension = BillingSuspension.objects.filter(account=account, ended_at__isnull=True).first()
    if suspension is None:
        raise Conflict(f"Billing of account {account.number} is not suspended.", code="not_suspended")
    suspension.ended_at = timezone.now()
    suspension.ended_by = _user(actor)
    suspension.end_note = (note or "").strip()[:300]
    suspension.save(update_fields=["ended_at", "ended_by", "end_note"])
    audit_record(
        actor=actor,
        action="billing.resume",
        obj=suspension,
        before={"ended_at": None},
        after={"ended_at": suspension.ended_at.isoformat(), "note": suspension.end_note},
        account_id=account.pk,
    )
    return suspension
