"""Repository: transforms (being written)."""
