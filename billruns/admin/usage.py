"""Admin: usage (filled by its feature work)."""
