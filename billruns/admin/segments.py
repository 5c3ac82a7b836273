"""Admin: segments (filled by its feature work)."""
