"""Reads of accounts for the pages and the API."""

from __future__ import annotations

from typing import Any

from django.contrib.postgres.expressions import ArraySubquery
from django.core.paginator import Page, Paginator
from django.db.models import Count, F, OuterRef, Q, QuerySet, Value, Window
from django.db.models.functions import JSONObject, Replace

from billing_mgmt.models import AuditRecord

from .models import Account, Biller, BillerReference, Contact

# Characters people write inside phone numbers; a search compares the digits (and "+") only.
PHONE_PUNCTUATION = (" ", "-", "(", ")", ".", "/")


def _phone_digits(field: str):
    expression = F(field)
    for char in PHONE_PUNCTUATION:
        expression = Replace(expression, Value(char), Value(""))
    return expression


def account_search(*, query: str, limit: int = 50) -> QuerySet[Account]:
    """Find accounts by number, name, contact e-mail or phone, or a biller's reference."""
    query = (query or "").strip()
    qs = Account.objects.select_related("parent", "billing_profile")
    if not query:
        return qs.none()
    digits = "".join(ch for ch in query if ch.isdigit() or ch == "+")
    condition = (
        Q(number__iexact=query)
        | Q(number__icontains=query)
        | Q(name__icontains=query)
        | Q(contacts__email__iexact=query)
        | Q(biller_references__external_ref__iexact=query)
    )
    if len(digits) >= 4:
        # Stored phones keep their formatting ("+1 (555) 010-7788"): compare without it.
        phones = Contact.objects.annotate(digits=_phone_digits("phone")).filter(digits__contains=digits)
        condition |= Q(id__in=phones.values("account_id"))
    ids = Account.objects.filter(condition).values("id").distinct()
    return qs.filter(id__in=ids).order_by("name", "number")[:limit]


def account_ancestors(*, account: Account) -> list[Account]:
    """Parents from the top of the hierarchy down to the account's parent (one query per level, bounded)."""
    path: list[Account] = []
    node = account.parent
    while node is not None and len(path) < Account.MAX_DEPTH:
        path.append(node)
        node = node.parent
    path.reverse()
    return path


def paying_account(*, account: Account) -> Account:
    """The account that receives the bill: itself, or the nearest paying ancestor."""
    node = account
    for _ in range(Account.MAX_DEPTH + 1):
        if node.is_paying or node.parent is None:
            return node
        node = node.parent
    return node


def billed_accounts(*, account: Account) -> list[Account]:
    """The accounts one bill carries (a bill unit): the paying account and its non-paying descendants, whose
    charges roll up to it. One query per level of the hierarchy, bounded by Account.MAX_DEPTH."""
    unit = paying_account(account=account)
    result, level = [unit], [unit.pk]
    for _ in range(Account.MAX_DEPTH + 1):
        children = list(Account.objects.filter(parent_id__in=level, is_paying=False).order_by("number"))
        if not children:
            break
        result.extend(children)
        level = [child.pk for child in children]
    return result


def bill_units_of(*, account_ids: list[int] | set[int]) -> dict[int, int]:
    """Each account's bill unit (itself, or its nearest paying ancestor), for a set of accounts at once: one
    query per level of the hierarchy, bounded by Account.MAX_DEPTH, whatever the number of accounts."""
    result: dict[int, int] = {}
    # account id -> the id being walked up from it
    walking = {pk: pk for pk in account_ids}
    for _ in range(Account.MAX_DEPTH + 2):
        if not walking:
            break
        rows = dict(
            (pk, (parent_id, is_paying))
            for pk, parent_id, is_paying in Account.objects.filter(pk__in=set(walking.values())).values_list(
                "pk", "parent_id", "is_paying"
            )
        )
        still = {}
        for origin, node in walking.items():
            if node not in rows:
                continue
            parent_id, is_paying = rows[node]
            if is_paying or parent_id is None:
                result[origin] = node
            else:
                still[origin] = parent_id
        walking = still
    for origin, node in walking.items():  # deeper than allowed: the last node reached, as paying_account does
        result[origin] = node
    return result


def bill_unit_members(*, unit_ids: list[int] | set[int]) -> dict[int, list[int]]:
    """For each bill unit, the accounts its bill carries: itself and its non-paying descendants (the unit
    first). One query per level of the hierarchy, whatever the number of units."""
    members: dict[int, list[int]] = {pk: [pk] for pk in unit_ids}
    level = {pk: pk for pk in unit_ids}  # account id -> its unit
    for _ in range(Account.MAX_DEPTH + 1):
        if not level:
            break
        children = Account.objects.filter(parent_id__in=list(level), is_paying=False).values_list(
            "pk", "parent_id"
        )
        next_level = {}
        for pk, parent_id in children.order_by("number"):
            unit = level[parent_id]
            members[unit].append(pk)
            next_level[pk] = unit
        level = next_level
    return members


def account_children(*, account: Account) -> QuerySet[Account]:
    return account.children.order_by("name").only(
        "id", "number", "name", "type", "status", "is_paying", "parent_id"
    )


CONTACT_FIELDS = ("id", "account_id", "name", "email", "phone", "role", "user_id", "bill_delivery")
REFERENCE_FIELDS = ("id", "account_id", "biller_id", "external_ref")
BILLER_FIELDS = ("id", "code", "name", "kind", "active")
CHILD_FIELDS = ("id", "number", "name", "type", "status", "is_paying", "parent_id")


def _json_rows(model, fields: tuple[str, ...], queryset: QuerySet, **extra) -> ArraySubquery:
    """The rows of ``queryset`` (correlated to the outer account) as one array of JSON objects."""
    return ArraySubquery(queryset.values(row=JSONObject(**{f: f for f in fields}, **extra)))


def _instances(model, fields: tuple[str, ...], rows: list[dict]) -> list:
    """Model instances from JSON rows, the other fields deferred (read on access, as ``only()`` does)."""
    names = [f.attname for f in model._meta.concrete_fields if f.attname in fields]
    return [model.from_db("default", names, [row[name] for name in names]) for row in rows]


def _prefetched(account: Account, name: str, objects: list) -> None:
    """Fill the related manager's cache as ``prefetch_related`` would (``account.<name>.all()`` reads it)."""
    queryset = getattr(account, name).all()
    queryset._result_cache = objects
    queryset._prefetch_done = True
    account._prefetched_objects_cache = getattr(account, "_prefetched_objects_cache", {})
    account._prefetched_objects_cache[name] = queryset


def account_detail(*, number: str, children: int = 0) -> Account:
    """The account page's account, by number, with what every accounts section shows, in one query: its
    profile and parents (joined), its contacts, its biller references with their billers and (when
    ``children`` > 0) its first ``children`` + 1 children by name, as JSON arrays. ``account.contacts.all()``
    and ``account.biller_references.all()`` read what came with it; the children are
    ``account.first_children``.

    Raises Account.DoesNotExist.
    """
    contacts = Contact.objects.filter(account_id=OuterRef("pk")).order_by("id")
    references = BillerReference.objects.filter(account_id=OuterRef("pk")).order_by(
        "biller__name", "external_ref"
    )
    qs = Account.objects.select_related("billing_profile", "parent", "parent__parent").annotate(
        contact_rows=_json_rows(Contact, CONTACT_FIELDS, contacts),
        reference_rows=_json_rows(
            BillerReference, REFERENCE_FIELDS, references,
            biller=JSONObject(**{f: f"biller__{f}" for f in BILLER_FIELDS}),
        ),
    )  # fmt: skip
    if children:
        kids = Account.objects.filter(parent_id=OuterRef("pk")).order_by("name", "id")[: children + 1]
        qs = qs.annotate(child_rows=_json_rows(Account, CHILD_FIELDS, kids))
    account = qs.get(number=number)
    _prefetched(account, "contacts", _instances(Contact, CONTACT_FIELDS, account.contact_rows))
    references = []
    for row in account.reference_rows:
        reference = _instances(BillerReference, REFERENCE_FIELDS, [row])[0]
        reference.biller = _instances(Biller, BILLER_FIELDS, [row["biller"]])[0]
        references.append(reference)
    _prefetched(account, "biller_references", references)
    if children:
        account.first_children = _instances(Account, CHILD_FIELDS, account.child_rows)
    return account


def account_for_sections(*, number: str) -> Account:
    """The account for a request that renders some sections only (a section's URL, a lazy part): with its
    profile and parents, without the accounts sections' contacts and references (read if a section asks).

    Raises Account.DoesNotExist.
    """
    return Account.objects.select_related("billing_profile", "parent", "parent__parent").get(number=number)


def accounts_for_biller(*, biller: Biller) -> QuerySet[Account]:
    """The accounts a biller may see: those with a reference at that biller."""
    return Account.objects.filter(biller_references__biller=biller)


def account_history_page(*, account_id: int, number: Any, per_page: int) -> Page:
    """One page of the account's audit records (newest first: what changed, who, when) with their count, in
    one query (``COUNT(*) OVER ()``, as the statements section does). Records about the account's objects
    carry its id (``AuditRecord.account_id``, set by the services); so do those about the account itself.
    A page past the end falls back to the paginator (the count, then the last page)."""
    records = AuditRecord.objects.filter(account_id=account_id).order_by("-created_at", "-id")
    paginator = Paginator(records, per_page)
    try:
        wanted = int(number)
    except (TypeError, ValueError):
        wanted = 1
    if wanted < 1:
        return paginator.get_page(wanted)
    start = (wanted - 1) * per_page
    rows = list(records.annotate(total_count=Window(Count("id")))[start : start + per_page])
    if not rows:
        return paginator.get_page(wanted)
    paginator.count = rows[0].total_count  # a cached_property: set, it is never queried
    return Page(rows, wanted, paginator)
