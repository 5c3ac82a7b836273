"""Models arrive with their feature issue (see DESIGN.md §2)."""
