"""bankcore's settings plus the naive view's URL (bench/side_by_side.py only)."""

from bankcore.settings import *  # noqa: F403

ROOT_URLCONF = "bench.naive_app.urls"
