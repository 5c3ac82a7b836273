"""CSR pages: home, account search, and the account page frame with its sections.

The account page is a frame (DESIGN.md §2): its header and the Billing profile, Contacts and Biller
references sections belong to this app; other apps add sections through ``billing_mgmt.sections`` without
this module ever importing them.
"""

from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.db.models import Prefetch
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.views.decorators.http import require_GET

from billing_mgmt.roles import CUSTOMER, has_role, is_staff_member
from billing_mgmt.sections import (
    HEADER,
    MAIN,
    SIDE,
    account_sections,
    get_section,
    is_partial,
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
    """Keep the last accounts a CSR opened (number and name only: no query to show them on the home page)."""
    entry = {"number": account.number, "name": account.name}
    recent = [e for e in _recent_accounts(request) if e.get("number") != account.number]
    request.session[RECENT_SESSION_KEY] = [entry, *recent][:RECENT_KEPT]


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


def _load_account(number: str) -> Account:
    try:
        return selectors.account_detail(number=number)
    except Account.DoesNotExist:
        raise Http404(f"No account {number}.") from None


def _render_slot(request: HttpRequest, account: Account, slot: str) -> list[dict]:
    return [
        {"section": section, "html": section.render(request, account)}
        for section in account_sections(user=request.user, slot=slot)
    ]


@staff_required
@require_GET
def account_detail(request: HttpRequest, number: str) -> HttpResponse:
    account = _load_account(number)
    ancestors = selectors.account_ancestors(account=account)
    children = list(selectors.account_children(account=account)[: CHILDREN_SHOWN + 1])
    more_children = len(children) > CHILDREN_SHOWN
    children_total = account.children.count() if more_children else len(children)
    # The ancestors are loaded now, so finding the paying parent walks objects already in memory.
    bill_to = None if account.is_paying else selectors.paying_account(account=account)
    _remember_account(request, account)
    context = {
        "account": account,
        "ancestors": ancestors,
        "children": children[:CHILDREN_SHOWN],
        "children_total": children_total,
        "bill_to": bill_to,
        "header_sections": _render_slot(request, account, HEADER),
        "main_sections": _render_slot(request, account, MAIN),
        "side_sections": _render_slot(request, account, SIDE),
        "search_form": AccountSearchForm(),
    }
    return render(request, "accounts/account_detail.html", context)


@staff_required
@require_GET
def account_section(request: HttpRequest, number: str, key: str) -> HttpResponse:
    """One section alone: the fragment for HTMX, or a page of its own (a deep link, or without JavaScript)."""
    section = get_section(key)
    if section is None:
        raise Http404(f"No section '{key}'.")
    account = _load_account(number)
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
