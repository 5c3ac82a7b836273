"""Django admin for billruns: the catalog, subscriptions, usage records and rated segments."""

from . import catalog, segments, subscriptions, usage  # noqa: F401  (each module registers its admins)
