"""The legacy core edge: its ISO 8583 connector and simulator, and its fixed-width customer and account export."""
