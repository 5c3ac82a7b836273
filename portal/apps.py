from django.apps import AppConfig


class PortalConfig(AppConfig):
    """The customer self-service portal at /portal/ (portal/views.py). It sits at the top of the dependency
    stack: it reads and writes through accounts, statements, invoicing, payments and disputes, and nothing
    imports it. It has no models of its own."""

    name = "portal"
    verbose_name = "Customer portal"
