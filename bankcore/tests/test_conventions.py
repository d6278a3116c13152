"""The API conventions every endpoint inherits: error shape, request ids, limits."""

import json

import pytest
from django.test import override_settings

pytestmark = pytest.mark.django_db


def assert_error(response, status, code):
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert isinstance(body["error"]["details"], dict)
    return body


def test_unknown_api_route_answers_json_404(client):
    assert_error(client.get("/api/v1/no-such-thing"), 404, "not_found")


def test_unknown_route_outside_api_is_not_forced_to_json(client):
    response = client.get("/no-such-page")
    assert response.status_code == 404
    assert not response["Content-Type"].startswith("application/json")


def test_wrong_method_answers_405_in_error_shape(client):
    with override_settings(ROOT_URLCONF=_echo_urlconf()):
        response = client.get("/api/v1/echo")
    assert_error(response, 405, "method_not_allowed")


def test_unauthenticated_access_answers_401(client):
    from django.urls import path
    from rest_framework.response import Response
    from rest_framework.views import APIView

    class Private(APIView):
        def get(self, request):
            return Response({"ok": True})

    with override_settings(ROOT_URLCONF=_urlconf_with(path("api/v1/private", Private.as_view()))):
        assert_error(client.get("/api/v1/private"), 401, "not_authenticated")


def test_malformed_json_answers_400_invalid_request(client):
    with override_settings(ROOT_URLCONF=_echo_urlconf()):
        response = client.post("/api/v1/echo", data="{not json", content_type="application/json")
    assert_error(response, 400, "invalid_request")


def test_oversize_body_answers_413(client):
    with override_settings(ROOT_URLCONF=_echo_urlconf(), API_MAX_BODY_BYTES=1000):
        response = client.post("/api/v1/echo", data=json.dumps({"x": "a" * 2000}), content_type="application/json")
    assert_error(response, 413, "request_too_large")


def test_validation_error_lists_fields(client):
    with override_settings(ROOT_URLCONF=_echo_urlconf()):
        response = client.post("/api/v1/echo", data={"amount": ""}, content_type="application/json")
    body = assert_error(response, 400, "invalid_request")
    assert "amount" in body["error"]["details"]


def test_unhandled_exception_answers_500_json_without_trace(client):
    from django.urls import path

    def boom(request):
        raise RuntimeError("secret internals")

    client.raise_request_exception = False
    with override_settings(ROOT_URLCONF=_urlconf_with(path("api/v1/boom", boom))):
        response = client.get("/api/v1/boom")
    body = assert_error(response, 500, "internal_error")
    assert "secret internals" not in json.dumps(body)


def test_request_id_is_generated_or_echoed(client):
    generated = client.get("/healthz")["X-Request-ID"]
    assert len(generated) >= 16
    echoed = client.get("/healthz", HTTP_X_REQUEST_ID="abc-123")["X-Request-ID"]
    assert echoed == "abc-123"
    # Something that could smuggle into logs is replaced, not echoed.
    assert client.get("/healthz", HTTP_X_REQUEST_ID="bad id\nx")["X-Request-ID"] != "bad id\nx"


def test_log_lines_are_json_with_request_id(client, capsys):
    import logging

    from bankcore.api.logging import RequestMeta, request_meta_var
    from bankcore.settings import LOGGING

    logging.config.dictConfig(LOGGING)
    token = request_meta_var.set(RequestMeta(request_id="req-42"))
    try:
        logging.getLogger("bankcore.test").info("hello", extra={"k": 1})
    finally:
        request_meta_var.reset(token)
    line = capsys.readouterr().err.strip().splitlines()[-1]
    record = json.loads(line)
    assert record["message"] == "hello" and record["request_id"] == "req-42" and record["level"] == "INFO"


def _urlconf_with(*patterns):
    import types

    from bankcore import urls as base

    module = types.ModuleType("test_urlconf")
    module.urlpatterns = [*patterns, *base.urlpatterns]
    for name in ("handler400", "handler403", "handler404", "handler500"):
        setattr(module, name, getattr(base, name))
    return module


def _echo_urlconf():
    from django.urls import path
    from rest_framework import serializers
    from rest_framework.permissions import AllowAny
    from rest_framework.response import Response
    from rest_framework.views import APIView

    class EchoSerializer(serializers.Serializer):
        amount = serializers.CharField()

    class Echo(APIView):
        permission_classes = [AllowAny]
        authentication_classes = []

        def post(self, request):
            data = EchoSerializer(data=request.data)
            data.is_valid(raise_exception=True)
            return Response(data.validated_data)

    return _urlconf_with(path("api/v1/echo", Echo.as_view()))
