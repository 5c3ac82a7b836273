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

A section registered with ``lazy="<part>"`` is not rendered in the page's first response: the frame shows
its card with a link to the section's own page (the fallback without JavaScript), and htmx loads all the
sections of that part in one request (``/accounts/<number>/parts/<part>/``, name ``account-part``) right after
the page, swapping each into its card out of band. This keeps every request within a small, fixed number of
queries (F8: at most 15 with the session, the user and the permissions) whatever the number of sections:
the first response carries the header, the statements and the account's own data; each part carries the
sections below them.

This module also holds ``staff_required``, the access rule of every CSR page: anonymous users go to the login
page, logged-in users without a staff role (customers) get 403.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import wraps
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import ImproperlyConfigured, PermissionDenied
from django.db import connection
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
    ``lazy`` names the part of the page the section loads with after the first response (empty: it is in the
    first response); keep each part's queries within the budget (tests/accounts/test_page_query_guards.py).
    ``notice`` is the session key (a format with ``{number}``, the account's) of the one-time notice the
    section shows after a form posted without JavaScript, which redirects to the account page: while it
    waits in the session, the frame renders the lazy section in the first response, so the notice is seen.
    """

    key: str
    title: str
    view: str | SectionView
    order: int = 100
    slot: str = MAIN
    permission: str | None = None
    refresh_on: tuple[str, ...] = field(default=("account-changed",))
    lazy: str = ""
    notice: str = ""

    def __post_init__(self) -> None:
        if self.lazy and (self.slot == HEADER or not self.lazy.replace("-", "").isalnum()):
            raise ImproperlyConfigured(
                f"Section '{self.key}': lazy must be a part name (letters, digits, '-'), and header tiles "
                "are never lazy."
            )
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

    def deferred(self, request: HttpRequest, account: Any) -> bool:
        """True when the frame leaves the section to its lazy part (no notice of it waits in the session)."""
        if not self.lazy:
            return False
        return not (self.notice and self.notice.format(number=account.number) in request.session)

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


def account_sections(*, user=None, slot: str | None = None, part: str | None = None) -> list[AccountSection]:
    """Registered sections in page order, optionally only one slot, one lazy part ("" for those in the first
    response) and only those the user may see."""
    sections = sorted(_registry.values(), key=lambda s: (s.order, s.key))
    if slot is not None:
        sections = [s for s in sections if s.slot == slot]
    if part is not None:
        sections = [s for s in sections if s.lazy == part]
    if user is not None:
        sections = [s for s in sections if s.visible_to(user)]
    return sections


def lazy_parts(*, user=None) -> list[str]:
    """The names of the lazy parts that have a section the user may see, in page order of their first
    section."""
    parts: list[str] = []
    for section in account_sections(user=user):
        if section.lazy and section.lazy not in parts:
            parts.append(section.lazy)
    return parts


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


_MODEL_BACKEND = "django.contrib.auth.backends.ModelBackend"


def _permission_backends() -> list[str]:
    """The backends Django asks for permissions (those with ``has_perm``): django-axes' backend only
    authenticates, so it does not count."""
    return [path for path in settings.AUTHENTICATION_BACKENDS if hasattr(import_string(path), "has_perm")]


def load_roles_and_permissions(user) -> None:
    """Read the user's groups and permissions (their own and their groups') in one query, and keep them where
    ``roles.role_names`` and Django's ModelBackend look first, so that ``has_perm`` never queries again in
    this request. ModelBackend reads them in three queries otherwise (groups, user permissions, group
    permissions). Only for active, non-superuser users under the default backend (a superuser's
    ``has_perm`` reads nothing; another backend keeps its own caches)."""
    if (
        not user.is_authenticated
        or not user.is_active
        or user.is_superuser
        or hasattr(user, "_perm_cache")
        or _permission_backends() != [_MODEL_BACKEND]
    ):
        return
    from django.contrib.auth.models import Group, Permission
    from django.contrib.contenttypes.models import ContentType

    q = connection.ops.quote_name
    user_groups = q(get_user_model().groups.through._meta.db_table)
    user_permissions = q(get_user_model().user_permissions.through._meta.db_table)
    group_permissions = q(Group.permissions.through._meta.db_table)
    group, permission, content_type = (q(m._meta.db_table) for m in (Group, Permission, ContentType))
    sql = f"""
        SELECT g.name, ct.app_label, p.codename FROM {user_groups} ug
        JOIN {group} g ON g.id = ug.group_id
        LEFT JOIN {group_permissions} gp ON gp.group_id = g.id
        LEFT JOIN {permission} p ON p.id = gp.permission_id
        LEFT JOIN {content_type} ct ON ct.id = p.content_type_id
        WHERE ug.user_id = %s
        UNION ALL
        SELECT NULL, ct.app_label, p.codename FROM {user_permissions} up
        JOIN {permission} p ON p.id = up.permission_id
        JOIN {content_type} ct ON ct.id = p.content_type_id
        WHERE up.user_id = %s
    """
    names: set[str] = set()
    from_groups: set[str] = set()
    own: set[str] = set()
    with connection.cursor() as cursor:
        cursor.execute(sql, [user.pk, user.pk])
        for name, app_label, codename in cursor.fetchall():
            if name is not None:
                names.add(name)
                if codename is not None:
                    from_groups.add(f"{app_label}.{codename}")
            else:
                own.add(f"{app_label}.{codename}")
    user._role_names = names
    user._user_perm_cache = own
    user._group_perm_cache = from_groups
    user._perm_cache = own | from_groups


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
        load_roles_and_permissions(request.user)
        if not is_staff_member(request.user):
            raise PermissionDenied("This page is for customer service staff.")
        request.staff_role = role_label(request.user)
        return view(request, *args, **kwargs)

    return wrapped
