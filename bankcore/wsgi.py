import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bankcore.settings")
application = get_wsgi_application()

# In production the web app refuses a superuser or the tables' owner (bankcore/db/roles.py):
# a worker that cannot boot stops gunicorn, instead of serving with the power to rewrite the ledger.
from bankcore.db.roles import arm_runtime_role_check  # noqa: E402

arm_runtime_role_check()
