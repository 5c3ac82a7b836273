"""CSR pages: home, account search, and the account page frame with its sections.

The account page is a frame (DESIGN.md §2): its header and the Billing profile, Contacts and Biller
references sections belong to this app; other apps add sections through ``billing_mgmt.sections`` without
this module ever importing them.
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib.auth import views as auth_views
from django.db.models import Prefetch
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.text import Truncator
from django.views.decorators.http import require_GET

from billing_mgmt.roles import CUSTOMER, has_role, is_staff_member
from billing_mgmt.sections import (
    HEADER,
    MAIN,
    SIDE,
    account_sections,
    get_section,
    is_partial,
    lazy_parts,
    staff_required,
)

from . import selectors
from .forms import AccountSearchForm, LoginForm
from .models import Account, Contact

SEARCH_LIMIT = 50
CHILDREN_SHOWN = 25
RECENT_SESSION_KEY = "csr_recent_accounts"
RECENT_KEPT = 8


def _is_customer(user) -> bool:
    """A logged-in customer (portal user) without a staff role: their pages are the portal's."""
    return user.is_authenticated and not is_staff_member(user) and has_role(user, CUSTOMER)


class LoginView(auth_views.LoginView):
    template_name = "registration/login.html"
    authentication_form = LoginForm
    redirect_authenticated_user = True

    def get_default_redirect_url(self) -> str:
        # Customers who log in here (without a ``next``) belong in the portal, not on a 403 page.
        if _is_customer(self.request.user):
            return reverse("portal:home")
        return super().get_default_redirect_url()


def _recent_accounts(request: HttpRequest) -> list[dict[str, str]]:
    return request.session.get(RECENT_SESSION_KEY, [])


def _remember_account(request: HttpRequest, account: Account) -> None:
    """Keep the last accounts a CSR opened (number and name only: no query to show them on the home page).
    The session is written only when the list changes (opening the same account again writes nothing)."""
    entry = {"number": account.number, "name": account.name}
    current = _recent_accounts(request)
    recent = [entry, *(e for e in current if e.get("number") != account.number)][:RECENT_KEPT]
    if recent != current:
        request.session[RECENT_SESSION_KEY] = recent


@require_GET
def csr_home(request: HttpRequest) -> HttpResponse:
    if _is_customer(request.user):
        return redirect("portal:home")
    return _csr_home(request)


@staff_required
def _csr_home(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "accounts/search.html",
        {"form": AccountSearchForm(), "query": "", "results": None, "recent": _recent_accounts(request)},
    )


def _search_results(query: str) -> tuple[list[Account], bool]:
    """At most SEARCH_LIMIT accounts and whether there were more, with each one's primary contact."""
    found = selectors.account_search(query=query, limit=SEARCH_LIMIT + 1).prefetch_related(
        Prefetch(
            "contacts",
            queryset=Contact.objects.filter(role=Contact.Role.PRIMARY),
            to_attr="primary_contacts",
        )
    )
    results = list(found)
    for account in results:
        account.primary_contact = account.primary_contacts[0] if account.primary_contacts else None
        account.bill_to = None if account.is_paying else selectors.paying_account(account=account)
    return results[:SEARCH_LIMIT], len(results) > SEARCH_LIMIT


@staff_required
@require_GET
def account_search(request: HttpRequest) -> HttpResponse:
    form = AccountSearchForm(request.GET)
    query = form.query()
    results, truncated = _search_results(query) if query else ([], False)
    partial = is_partial(request)
    # A search typed into the box and submitted (not the live HTMX search) goes straight to a single hit.
    if query and len(results) == 1 and not partial:
        return redirect("account-detail", number=results[0].number)
    context = {
        "form": form,
        "query": query,
        "results": results,
        "truncated": truncated,
        "limit": SEARCH_LIMIT,
        "invalid": form.is_bound and not form.is_valid(),
    }
    if partial:
        return render(request, "accounts/_search_results.html", context)
    context["recent"] = _recent_accounts(request)
    return render(request, "accounts/search.html", context)


def _load_account(number: str, *, children: int = 0) -> Account:
    try:
        return selectors.account_detail(number=number, children=children)
    except Account.DoesNotExist:
        raise Http404(f"No account {number}.") from None


def _load_account_for(number: str, sections) -> Account:
    """The account for a request that renders only these sections: this app's own sections read its contacts
    and references, which come with it in the same query (selectors.account_detail)."""
    if any(section.key in OWN_SECTIONS for section in sections):
        return _load_account(number)
    try:
        return selectors.account_for_sections(number=number)
    except Account.DoesNotExist:
        raise Http404(f"No account {number}.") from None


OWN_SECTIONS = ("profile", "contacts", "references")


def _render_slot(request: HttpRequest, account: Account, slot: str) -> list[dict]:
    """The slot's sections; a lazy one's html is None (the frame shows its card, htmx loads its part), unless
    a notice of it waits (a form posted without JavaScript came back here)."""
    return [
        {
            "section": section,
            "html": None if section.deferred(request, account) else section.render(request, account),
        }
        for section in account_sections(user=request.user, slot=slot)
    ]


@staff_required
@require_GET
def account_detail(request: HttpRequest, number: str) -> HttpResponse:
    account = _load_account(number, children=CHILDREN_SHOWN)
    ancestors = selectors.account_ancestors(account=account)
    children = account.first_children
    more_children = len(children) > CHILDREN_SHOWN
    children_total = account.children.count() if more_children else len(children)
    # The ancestors are loaded now, so finding the paying parent walks objects already in memory.
    bill_to = None if account.is_paying else selectors.paying_account(account=account)
    _remember_account(request, account)
    header, main, side = (_render_slot(request, account, slot) for slot in (HEADER, MAIN, SIDE))
    context_sections = [*header, *main, *side]
    context = {
        "account": account,
        "ancestors": ancestors,
        "children": children[:CHILDREN_SHOWN],
        "children_total": children_total,
        "bill_to": bill_to,
        "header_sections": header,
        "main_sections": main,
        "side_sections": side,
        "lazy_parts": _part_loaders(request, account, context_sections),
        "search_form": AccountSearchForm(),
    }
    return render(request, "accounts/account_detail.html", context)


def _part_loaders(request: HttpRequest, account: Account, items: list[dict]) -> list[dict]:
    """The URL of each lazy part still to load, without the sections the frame rendered already (a notice
    of theirs was waiting)."""
    inline = {item["section"].key for item in items if item["section"].lazy and item["html"] is not None}
    loaders = []
    for part in lazy_parts(user=request.user):
        keys = [s.key for s in account_sections(user=request.user, part=part)]
        skipped = [key for key in keys if key in inline]
        if len(skipped) == len(keys):
            continue
        url = reverse("account-part", args=[account.number, part])
        loaders.append({"name": part, "url": f"{url}?skip={','.join(skipped)}" if skipped else url})
    return loaders


@staff_required
@require_GET
def account_part(request: HttpRequest, number: str, part: str) -> HttpResponse:
    """The sections of one lazy part of the account page, each swapped into its card out of band (htmx, right
    after the page). Without htmx (a deep link) the same sections as a page of their own."""
    skip = set(request.GET.get("skip", "").split(","))
    sections = [s for s in account_sections(user=request.user, part=part) if s.key not in skip]
    if not part or not sections:
        raise Http404(f"No part '{part}'.")
    account = _load_account_for(number, sections)
    items = [{"section": section, "html": section.render(request, account)} for section in sections]
    if is_partial(request):
        return render(request, "accounts/_part.html", {"account": account, "items": items})
    return render(request, "accounts/part_page.html", {"account": account, "items": items})


@staff_required
@require_GET
def account_section(request: HttpRequest, number: str, key: str) -> HttpResponse:
    """One section alone: the fragment for HTMX, or a page of its own (a deep link, or without JavaScript)."""
    section = get_section(key)
    if section is None:
        raise Http404(f"No section '{key}'.")
    account = _load_account_for(number, [section])
    if not section.visible_to(request.user):
        raise Http404(f"No section '{key}'.")
    html = section.render(request, account)
    if is_partial(request):
        return HttpResponse(html)
    return render(
        request, "accounts/section_page.html", {"account": account, "section": section, "html": html}
    )


# Sections served by this app (registered in AccountsConfig.ready()).


def profile_section(request: HttpRequest, account: Account) -> str:
    profile = getattr(account, "billing_profile", None)
    return render_to_string(
        "accounts/sections/profile.html", {"account": account, "profile": profile}, request=request
    )


def contacts_section(request: HttpRequest, account: Account) -> str:
    # Uses the contacts prefetched by selectors.account_detail: no query.
    contacts = sorted(account.contacts.all(), key=lambda c: (c.role != Contact.Role.PRIMARY, c.role, c.name))
    return render_to_string(
        "accounts/sections/contacts.html", {"account": account, "contacts": contacts}, request=request
    )


def references_section(request: HttpRequest, account: Account) -> str:
    references = list(account.biller_references.all())
    return render_to_string(
        "accounts/sections/references.html", {"account": account, "references": references}, request=request
    )


# The account's history: its audit records (billing_mgmt.models.AuditRecord), newest first.

HISTORY_KEY = "history"
HISTORY_PER_PAGE = 20
HISTORY_FIELDS_SHOWN = 8  # of a record made on create (no before): its first fields
_GONE = object()


def _history_value(value: Any) -> str:
    if value is _GONE or value is None or value == "":
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (dict, list)):
        value = json.dumps(value, sort_keys=True, ensure_ascii=False)
    return Truncator(str(value)).chars(80)


def _history_label(key: str) -> str:
    return key.removesuffix("_id").replace("_", " ")


def history_changes(before: Any, after: Any) -> list[dict[str, str]]:
    """What a record says changed, readably: each field whose value differs, before → after. A record of a
    creation (no before) lists what was set; one of a deletion (no after) what was there. A field that reads
    the same on both sides (empty before and after) is left out."""
    before = before if isinstance(before, dict) else {}
    after = after if isinstance(after, dict) else {}
    keys = list(after) + [k for k in before if k not in after]
    changes = []
    for key in keys:
        was, now = _history_value(before.get(key, _GONE)), _history_value(after.get(key, _GONE))
        if was != now:
            changes.append({"field": _history_label(key), "before": was, "after": now})
    return changes[:HISTORY_FIELDS_SHOWN] if not before else changes


def _history_own_request(request: HttpRequest) -> bool:
    """Only the section's own URL pages (the account page shows the newest page)."""
    match = request.resolver_match
    own = match is not None and match.url_name == "account-section"
    return own and match.kwargs.get("key") == HISTORY_KEY


def history_section(request: HttpRequest, account: Account) -> str:
    """The account's history: every audited change of it and its objects (bills, payments, adjustments,
    methods, cases, disputes...), newest first, a page at a time: one query whatever the number of records."""
    number = request.GET.get("page") if _history_own_request(request) else 1
    page = selectors.account_history_page(account_id=account.pk, number=number, per_page=HISTORY_PER_PAGE)
    entries = [
        {"record": record, "changes": history_changes(record.before, record.after)}
        for record in page.object_list
    ]
    return render_to_string(
        "accounts/sections/history.html",
        {"account": account, "page": page, "entries": entries, "section_key": HISTORY_KEY},
        request=request,
    )
