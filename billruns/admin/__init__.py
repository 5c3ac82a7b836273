"""Django admin for billruns: the catalog, subscriptions, usage records, rated segments and billing runs."""

from . import catalog, runs, segments, subscriptions, usage  # noqa: F401  (each module registers its admins)
