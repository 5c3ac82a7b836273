"""Reads of accounts for the pages and the API."""

from __future__ import annotations

from django.db.models import F, Q, QuerySet, Value
from django.db.models.functions import Replace

from .models import Account, Biller, Contact

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


def account_children(*, account: Account) -> QuerySet[Account]:
    return account.children.order_by("name").only(
        "id", "number", "name", "type", "status", "is_paying", "parent_id"
    )


def account_detail(*, number: str) -> Account:
    """The account page's account, by number, with what every accounts section shows (one query + prefetches).

    Raises Account.DoesNotExist.
    """
    return (
        Account.objects.select_related("billing_profile", "parent", "parent__parent")
        .prefetch_related("contacts", "biller_references__biller")
        .get(number=number)
    )


def accounts_for_biller(*, biller: Biller) -> QuerySet[Account]:
    """The accounts a biller may see: those with a reference at that biller."""
    return Account.objects.filter(biller_references__biller=biller)
