"""Request bodies take JSON values of exactly the type the OpenAPI schema names.

DRF coerces: a CharField takes the number 0 as "0", a BooleanField takes 0, "yes" and "on",
an IntegerField takes "7". The schema says string, boolean, integer, so a client sending
something else has a bug the server should tell it about (400 `invalid_request`) rather than
guess; and schemathesis' negative-data checks hold us to it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rest_framework import serializers

_QUERY_BOOLEANS = {"true": True, "false": False}


def _json_type(field: serializers.Field) -> tuple[str, tuple[type, ...]] | None:
    """The JSON type a field's schema names, with the Python types json.loads gives for it."""
    if isinstance(field, serializers.BooleanField):
        return "boolean", (bool,)
    if isinstance(field, serializers.IntegerField):
        return "integer", (int,)
    if isinstance(field, serializers.FloatField | serializers.DecimalField):
        return "number", (int, float)
    if isinstance(field, serializers.ListField | serializers.ListSerializer | serializers.MultipleChoiceField):
        return "array", (list,)
    if isinstance(field, serializers.DictField | serializers.Serializer):
        return "object", (dict,)
    if isinstance(field, serializers.ChoiceField):
        if all(isinstance(choice, str) for choice in field.choices):
            return "string", (str,)
        return None
    if isinstance(
        field,
        serializers.CharField
        | serializers.UUIDField
        | serializers.DateField
        | serializers.DateTimeField
        | serializers.TimeField,
    ):
        return "string", (str,)
    return None


class StrictInputSerializer(serializers.Serializer):
    # An input serializer whose fields refuse JSON values of another type (a bool is no integer).
    # A comment, not a docstring: drf-spectacular would publish it as every input's description.

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, Mapping):
            errors: dict[str, list[str]] = {}
            for name, field in self.fields.items():
                if field.read_only or name not in data or data[name] is None:
                    continue
                expected = _json_type(field)
                if expected is None:
                    continue
                label, types = expected
                value = data[name]
                if not isinstance(value, types) or (label in ("integer", "number") and isinstance(value, bool)):
                    errors[name] = [f"Must be a JSON {label}."]
            if errors:
                raise serializers.ValidationError(errors)
        return super().to_internal_value(data)


def query_boolean(request: Any, name: str) -> bool | None:
    """A boolean query parameter as the schema describes it: `true` or `false`; absent is None.

    Anything else is 400 `invalid_request` naming the parameter.
    """
    raw = request.query_params.get(name)
    if raw is None:
        return None
    try:
        return _QUERY_BOOLEANS[raw]
    except KeyError:
        raise serializers.ValidationError({name: ["Must be true or false."]}) from None
