"""Admin: subscriptions (filled by its feature work)."""
