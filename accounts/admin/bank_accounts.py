"""Admin for bank accounts (ledger)."""
