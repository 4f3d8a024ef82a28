"""Solution concepts."""
