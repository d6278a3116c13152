"""The API as app teams consume it: a generated client and schemathesis against a real gunicorn."""

# The Python package openapi-python-client generates from the served schema (into a temp dir).
CLIENT_PACKAGE = "bankcore_client"
