"""Admin template helpers: ``{% load statements_admin %}{% billing_reports as links %}``."""

from __future__ import annotations

from django import template

register = template.Library()


@register.simple_tag(takes_context=True)
def billing_reports(context) -> list[dict[str, str]]:
    """The billing admins' reports the current user may open (none for anyone else)."""
    from statements.admin.reports import report_links

    request = context.get("request")
    user = getattr(request, "user", None) or context.get("user")
    return report_links(user) if user is not None else []
