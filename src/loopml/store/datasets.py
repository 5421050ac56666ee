"""Repository: datasets (being written)."""
