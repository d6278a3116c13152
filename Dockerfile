# bankcore: one image runs web (default), worker and beat; pick by command.
#   docker run IMAGE                                  -> gunicorn web
#   docker run IMAGE celery -A bankcore worker -Q default,settlement,notifications,maintenance
#   docker run IMAGE celery -A bankcore beat
# Database roles: each deploy first runs, with DATABASE_URL naming the tables' owner,
#   docker run IMAGE sh -c "python manage.py migrate --noinput && python manage.py grant_app_role bankcore_app"
# and web, worker and beat get a DATABASE_URL naming the runtime role (bankcore_app). With
# BANKCORE_ENV=production (the default here) they refuse to start as a superuser or the owner.

# --- build stage: compile wheels with the toolchain, which stays out of the final image
FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update && apt-get install -y --no-install-recommends build-essential && rm -rf /var/lib/apt/lists/*
COPY requirements.txt /tmp/requirements.txt
RUN python -m venv /opt/venv && /opt/venv/bin/pip install -r /tmp/requirements.txt

# --- runtime stage: slim, non-root
FROM python:3.11-slim-bookworm AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    BANKCORE_ENV=production \
    STATIC_ROOT=/app/staticfiles
RUN groupadd --system bank && useradd --system --gid bank --home /app --shell /usr/sbin/nologin bank
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY --chown=bank:bank . /app
# Static files are collected here, once (hashed names, gzip copies), and served by the app (WhiteNoise).
# collectstatic needs settings but no secrets or database: give it throwaway values at build time only.
RUN SECRET_KEY=build-only-not-a-secret-build-only-not-a-secret-000000 DATABASE_URL=postgres://build-only@localhost/never-connected \
    AUDIT_HMAC_KEY=build-only-not-a-secret-build-only-000 \
    python manage.py collectstatic --noinput --verbosity 0 && mkdir -p /app/var/audit-checkpoints && chown -R bank:bank /app/var /app/staticfiles
USER bank
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz').status != 200)"
CMD ["gunicorn", "bankcore.wsgi:application"]
