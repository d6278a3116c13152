"""Writes for customers, auth, devices (identity) and bank accounts (ledger). One module per area."""
