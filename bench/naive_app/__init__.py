"""A naive DRF + ORM transfer view, for bench/side_by_side.py only: never part of the product.

It is what a first draft of a transfer endpoint looks like (issue 18): no authentication, no
idempotency, no limits, no audit, no alerts - lock both accounts with select_for_update, two
balance updates, the journal row and two entries through the ORM. It uses bankcore's own models
and settings, so it writes the same tables under the same triggers (the deferred balance check
included) and passes through the same middleware as POST /api/v1/transfers. Served by the same
gunicorn as bankcore with DJANGO_SETTINGS_MODULE=bench.naive_app.settings, which mounts it at
/api/bench/naive-transfers next to bankcore's own URLs.
"""
