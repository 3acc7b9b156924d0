"""Query parameters as the schema states them: the filters' base serializer and the pagination.

DRF is lenient with query strings where the schema is not: a form-style serializer treats an
empty optional value (``?method=``) as absent, takes the last of repeated keys, and
``LimitOffsetPagination`` ignores a ``limit`` it cannot read. Here each of those is a 400 in the
API's error format, so a client learns about its mistake instead of receiving a list it did not
ask for, and the schema's ``minLength: 1``, ``minimum`` and ``maximum`` are what the server
enforces (checked by Schemathesis, ``leaderboard/tests/test_api_contract.py``).
"""

from __future__ import annotations

import re

from django.core.validators import RegexValidator
from drf_spectacular.plumbing import build_parameter_type
from drf_spectacular.utils import OpenApiParameter
from rest_framework import serializers
from rest_framework.pagination import LimitOffsetPagination

_INTEGER = re.compile(r"[0-9]{1,18}")

KEY_PATTERN = r"^[-a-zA-Z0-9_]+$"  # method, dataset and suite keys (Django slugs)
TEXT_PATTERN = r"^[^\x00-\x1f\x7f]+$"  # any text without control characters


class FullMatchValidator(RegexValidator):
    """A ``RegexValidator`` whose pattern must match the whole value, as in JSON Schema.

    Python's ``$`` also matches before a final newline, so ``"abc\\n"`` passes Django's own
    validator for ``^[a-z]+$``; ``fullmatch`` does not let it. drf-spectacular writes the
    pattern into the schema.
    """

    def __call__(self, value):
        if not self.regex.fullmatch(str(value)):
            raise serializers.ValidationError(self.message, code=self.code)


def key_filter(*, max_length: int, help_text: str) -> serializers.CharField:
    """An optional filter by key (letters, digits, ``-`` and ``_``), taken as given."""
    return serializers.CharField(
        required=False,
        max_length=max_length,
        trim_whitespace=False,
        help_text=help_text,
        validators=[FullMatchValidator(KEY_PATTERN, "Enter a key: letters, digits, hyphens or underscores.")],
    )


def text_filter(*, max_length: int, help_text: str) -> serializers.CharField:
    """An optional filter by a text value (no control characters), taken as given."""
    return serializers.CharField(
        required=False,
        max_length=max_length,
        trim_whitespace=False,
        help_text=help_text,
        validators=[FullMatchValidator(TEXT_PATTERN, "Control characters are not allowed.")],
    )


class StrictBooleanField(serializers.BooleanField):
    """``true`` or ``false`` and nothing else (DRF also takes ``1``, ``yes``, ``on``...)."""

    def to_internal_value(self, data):
        if data is True or data == "true":
            return True
        if data is False or data == "false":
            return False
        self.fail("invalid", input=data)


class QuerySerializer(serializers.Serializer):
    """Base of the views' ``FilterSerializer``: an empty or repeated parameter is invalid.

    Every field is an optional filter; give it ``required=False``. Parameters that no field
    names (``limit``, ``offset``, others) are left to the pagination and otherwise ignored.
    """

    def to_internal_value(self, data):
        errors = {}
        if hasattr(data, "getlist"):
            for name in self.fields:
                values = data.getlist(name)
                if len(values) > 1:
                    errors[name] = [f"give {name} once (it was given {len(values)} times)"]
                elif values and values[0] == "":
                    errors[name] = ["This field may not be blank."]
        if errors:
            raise serializers.ValidationError(errors)
        return super().to_internal_value(data)


class Pagination(LimitOffsetPagination):
    """``?limit=`` (1..1000, default 100) and ``?offset=`` (0.., default 0); anything else is a 400."""

    default_limit = 100
    max_limit = 1000

    def _integer(self, request, name: str, *, default: int, low: int, high: int | None) -> int:
        values = request.query_params.getlist(name)
        if not values:
            return default
        if len(values) > 1:
            raise serializers.ValidationError({name: [f"give {name} once (it was given {len(values)} times)"]})
        value = values[0]
        if not _INTEGER.fullmatch(value) or not (low <= int(value) and (high is None or int(value) <= high)):
            bound = f"from {low} to {high}" if high is not None else f"{low} or more"
            raise serializers.ValidationError({name: [f"{name} must be a whole number {bound}; got {value!r}"]})
        return int(value)

    def get_limit(self, request):
        return self._integer(request, self.limit_query_param, default=self.default_limit, low=1, high=self.max_limit)

    def get_offset(self, request):
        return self._integer(request, self.offset_query_param, default=0, low=0, high=None)

    def get_schema_operation_parameters(self, view):
        return [
            build_parameter_type(
                name=self.limit_query_param,
                location=OpenApiParameter.QUERY,
                description=f"Number of results per page (default {self.default_limit}).",
                schema={"type": "integer", "minimum": 1, "maximum": self.max_limit, "default": self.default_limit},
            ),
            build_parameter_type(
                name=self.offset_query_param,
                location=OpenApiParameter.QUERY,
                description="Index of the first result of the page (default 0).",
                schema={"type": "integer", "minimum": 0, "maximum": 10**18 - 1, "default": 0},
            ),
        ]

    def get_paginated_response_schema(self, schema):
        return {
            "type": "object",
            "required": ["count", "next", "previous", "results"],
            "properties": {
                "count": {"type": "integer", "minimum": 0, "example": 123},
                "next": {
                    "type": "string",
                    "nullable": True,
                    "format": "uri",
                    "example": "https://leaderboard.example.org/api/v1/results/?limit=100&offset=100",
                },
                "previous": {"type": "string", "nullable": True, "format": "uri", "example": None},
                "results": schema,
            },
        }
