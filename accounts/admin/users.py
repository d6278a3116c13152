"""Admin for customers and staff (identity)."""
