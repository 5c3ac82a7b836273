"""Admin: catalog (filled by its feature work)."""
