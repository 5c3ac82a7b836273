"""The CSR account page is a frame; each app fills it with sections it serves itself.

``accounts`` owns the frame (the header and the page at /accounts/<number>/) but never imports the apps
above it. Instead, every app registers its sections here from its ``AppConfig.ready()``:

    register_section(AccountSection(
        key="ledger", title="Ledger", view="statements.views.ledger.ledger_section", order=50,
        permission="statements.view_financialtransaction",
    ))

A section view is a plain function ``view(request, account) -> str`` that renders the app's own template
into an HTML fragment (``render_to_string`` returns it marked safe; a plain str is escaped). The frame calls
it server-side while rendering the page (so the page is complete without JavaScript, and the account is
loaded once for all sections), and the generic URL ``/accounts/<number>/sections/<key>/`` (name
``account-section``) calls it again so that HTMX can refresh one section in place. See docs/csr-pages.md.

This module also holds ``staff_required``, the access rule of every CSR page: anonymous users go to the login
page, logged-in users without a staff role (customers) get 403.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import wraps
from typing import Any

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import ImproperlyConfigured, PermissionDenied
from django.http import HttpRequest
from django.utils.module_loading import import_string
from django_htmx.http import HttpResponseClientRedirect

from .roles import STAFF_ROLES, is_staff_member, role_names

HEADER = "header"  # small tiles beside the account's name (balance, past due, alerts)
MAIN = "main"  # the wide column (ledger, statements, payments, disputes)
SIDE = "side"  # the narrow column (profile, contacts, references)
SLOTS = (HEADER, MAIN, SIDE)

SectionView = Callable[[HttpRequest, Any], str]


@dataclass(frozen=True)
class AccountSection:
    """One part of the account page.

    ``view`` is a callable or its dotted path (resolved on first use, so ``ready()`` need not import views).
    ``permission`` ("app_label.codename") hides the section from users who lack it. ``refresh_on`` lists the
    HTMX events (sent by views with the ``HX-Trigger`` header) after which the section reloads itself.
    """

    key: str
    title: str
    view: str | SectionView
    order: int = 100
    slot: str = MAIN
    permission: str | None = None
    refresh_on: tuple[str, ...] = field(default=("account-changed",))

    def __post_init__(self) -> None:
        if self.slot not in SLOTS:
            raise ImproperlyConfigured(
                f"Section '{self.key}': slot must be one of {SLOTS}, not '{self.slot}'."
            )
        if not self.key.replace("-", "").isalnum() or self.key != self.key.lower():
            raise ImproperlyConfigured(
                f"Section key '{self.key}' must be lower-case letters, digits and '-'."
            )

    def resolve_view(self) -> SectionView:
        return import_string(self.view) if isinstance(self.view, str) else self.view

    def render(self, request: HttpRequest, account: Any) -> str:
        return self.resolve_view()(request, account)

    def visible_to(self, user) -> bool:
        return self.permission is None or user.has_perm(self.permission)

    @property
    def hx_trigger(self) -> str:
        return ", ".join(f"{event} from:body" for event in self.refresh_on)


_registry: dict[str, AccountSection] = {}


def register_section(section: AccountSection) -> AccountSection:
    """Add a section. Registering the same definition again is harmless; a different one under a taken key is
    a configuration error (two apps would fight over one place on the page)."""
    existing = _registry.get(section.key)
    if existing is not None and existing != section:
        raise ImproperlyConfigured(f"Account section '{section.key}' is already registered differently.")
    _registry[section.key] = section
    return section


def unregister_section(key: str) -> None:
    _registry.pop(key, None)


def get_section(key: str) -> AccountSection | None:
    return _registry.get(key)


def account_sections(*, user=None, slot: str | None = None) -> list[AccountSection]:
    """Registered sections in page order, optionally only one slot and only those the user may see."""
    sections = sorted(_registry.values(), key=lambda s: (s.order, s.key))
    if slot is not None:
        sections = [s for s in sections if s.slot == slot]
    if user is not None:
        sections = [s for s in sections if s.visible_to(user)]
    return sections


# Statement panels: parts of the statement page that an app above ``statements`` adds (the billing engine's
# "Calculation"), so that ``statements`` never imports it. A panel view is ``view(request, statement, lines)``
# with the statement's lines already loaded; it returns a RenderedPanel, or None when it has nothing to say
# about this statement (the panel is then left out).


@dataclass(frozen=True)
class LineAction:
    """A small link a panel adds to one statement line's row: an action ("Dispute") or, with ``badge``, a
    state that links to more ("Disputed", to its case). ``description`` is read to screen readers after the
    label (e.g. "line 2, Roaming"), since the visible label alone does not say which line it is about."""

    label: str
    url: str
    badge: bool = False
    description: str = ""


@dataclass
class RenderedPanel:
    """A panel's HTML; per statement line id, the anchors (ids in ``html``) that explain that line; and per
    line id, the actions the panel adds to that line's row (label + url, shown beside the line)."""

    html: str
    line_anchors: dict[int, list[str]] = field(default_factory=dict)
    line_actions: dict[int, list[LineAction]] = field(default_factory=dict)


@dataclass(frozen=True)
class StatementPanel:
    key: str
    title: str
    view: str | Callable[..., RenderedPanel | None]
    order: int = 100
    permission: str | None = None

    def render(self, request: HttpRequest, statement: Any, lines: list) -> RenderedPanel | None:
        view = import_string(self.view) if isinstance(self.view, str) else self.view
        return view(request, statement, lines)

    def visible_to(self, user) -> bool:
        return self.permission is None or user.has_perm(self.permission)


_panels: dict[str, StatementPanel] = {}


def register_statement_panel(
    key: str, view: str | Callable[..., RenderedPanel | None], permission: str | None = None,
    order: int = 100, title: str = "",
) -> StatementPanel:  # fmt: skip
    """Add a panel to the statement page (from an app's ``ready()``); same rules as ``register_section``."""
    panel = StatementPanel(key=key, title=title or key.replace("-", " ").capitalize(), view=view,
                           order=order, permission=permission)  # fmt: skip
    existing = _panels.get(key)
    if existing is not None and existing != panel:
        raise ImproperlyConfigured(f"Statement panel '{key}' is already registered differently.")
    _panels[key] = panel
    return panel


def statement_panels(*, user=None) -> list[StatementPanel]:
    """Registered statement panels in page order, optionally only those the user may see."""
    panels = sorted(_panels.values(), key=lambda p: (p.order, p.key))
    return [p for p in panels if user is None or p.visible_to(user)]


def is_partial(request: HttpRequest) -> bool:
    """True for an HTMX request that wants a fragment (not a history restore, which needs the whole page)."""
    htmx = getattr(request, "htmx", None)
    return bool(htmx) and not htmx.history_restore_request


def role_label(user) -> str:
    """The user's staff roles for the top bar, e.g. 'CSR' or 'Supervisor'."""
    if not user.is_authenticated:
        return ""
    if user.is_superuser:
        return "Superuser"
    names = role_names(user)
    return ", ".join(role for role in STAFF_ROLES if role in names)


def staff_required(view):
    """CSR pages: anonymous users are sent to log in; users without a staff role (customers) get 403."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args, **kwargs):
        if not request.user.is_authenticated:
            if is_partial(request):
                # A fragment request after the session expired: send the whole page to the login form.
                return HttpResponseClientRedirect(
                    redirect_to_login(request.htmx.current_url_abs_path or "/").url
                )
            return redirect_to_login(request.get_full_path())
        if not is_staff_member(request.user):
            raise PermissionDenied("This page is for customer service staff.")
        request.staff_role = role_label(request.user)
        return view(request, *args, **kwargs)

    return wrapped
