"""unified."""
