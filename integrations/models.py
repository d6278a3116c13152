"""Models: see the issues for this app."""
