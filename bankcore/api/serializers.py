"""Serializers without the per-request setup cost, for the hot endpoints.

A DRF serializer deep-copies and binds its declared fields every time one is built:
for a dozen fields that costs more than the validation itself (~0.1-0.2 ms a request).
Bound fields keep no per-call state, so a `ReusableSerializer` class keeps one bound
set and offers two class methods:

- `represent(obj)`: `serializer(obj).data` as a plain dict, same values.
- `validated(data)`: `validated_data` for well-formed input, checked by the same fields
  and the class's `validate()`. Input that fails anywhere is validated again by a
  fresh serializer, which raises its ValidationError: error responses are exactly the
  serializer's, only the happy path is shortcut.

Only simple input serializers take the shortcut (writable fields with their own names
as sources, no `validate_<field>` methods, no serializer-level validators); any other
class validates as usual through `validated()`.
"""

from __future__ import annotations

import contextlib
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import serializers
from rest_framework.fields import SkipField, empty


class ReusableSerializer(serializers.Serializer):
    _shared: ReusableSerializer | None = None
    _shortcut: bool = False

    @classmethod
    def _shared_instance(cls) -> ReusableSerializer:
        shared = cls.__dict__.get("_shared")
        if shared is None:
            shared = cls()
            fields = shared.fields  # bound once, here
            cls._shortcut = not shared.get_validators() and all(
                not field.read_only
                and field.source_attrs == [name]
                and getattr(shared, f"validate_{name}", None) is None
                for name, field in fields.items()
            )
            cls._shared = shared
        return shared

    @classmethod
    def represent(cls, instance: Any) -> dict[str, Any]:
        """What `cls(instance).data` holds, as a plain dict."""
        return cls._shared_instance().to_representation(instance)

    @classmethod
    def validated(cls, data: Any) -> dict[str, Any]:
        """What `validated_data` holds after `cls(data=data).is_valid(raise_exception=True)`."""
        shared = cls._shared_instance()
        if cls._shortcut and type(data) is dict:
            values: dict[str, Any] = {}
            try:
                for name, field in shared.fields.items():
                    raw = data.get(name, empty)
                    with contextlib.suppress(SkipField):  # optional, no default: left out
                        values[name] = field.run_validation(raw)
                return shared.validate(values)
            except (serializers.ValidationError, DjangoValidationError):
                pass  # the full serializer below names the error
        serializer = cls(data=data)
        serializer.is_valid(raise_exception=True)
        return serializer.validated_data
