"""One error format for the whole API: ``{"error": {"code", "message", "details"}}``.

Configured as DRF's ``EXCEPTION_HANDLER``. Django's own ``ValidationError`` (raised by services'
``full_clean``) and the selectors' ``ValueError``/``LookupError`` subclasses become 400/404.
The format is the schema's ``Error`` component (:class:`ErrorSerializer`); ``apis.schema``
documents it on every operation for every status the operation can answer.
"""

from __future__ import annotations

from django.core.exceptions import ObjectDoesNotExist
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework import exceptions, serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.views import APIView
from rest_framework.views import exception_handler as drf_exception_handler

from ..selectors.leaderboard import InvalidFilterError, SuiteNotFoundError
from ..selectors.metrics import UnknownMetricError

ERROR_CODES = (
    "invalid",  # 400: a parameter or a field of the body is wrong (details: the messages by field)
    "parse_error",  # 400: the body is not what its Content-Type says (malformed JSON, multipart)
    "not_authenticated",  # 401: the operation needs credentials and none were given
    "authentication_failed",  # 401: a token or session that is not valid
    "permission_denied",  # 403: signed in, but not allowed (staff only; a failed CSRF check)
    "not_found",  # 404: no such object, or not one the caller may see (hidden = missing)
    "method_not_allowed",  # 405
    "not_acceptable",  # 406: the Accept header asks for a format other than JSON
    "bundle_too_large",  # 413: an upload over VADI_BUNDLE_MAX_BYTES
    "unsupported_media_type",  # 415: a body in a media type the operation does not read
    "throttled",  # 429: over a submission quota
)


class ErrorInfoSerializer(serializers.Serializer):
    code = serializers.CharField(
        help_text="What went wrong, for programs: " + ", ".join(f"`{c}`" for c in ERROR_CODES) + "."
    )
    message = serializers.CharField(
        help_text="One sentence for a person; for invalid input it starts with the field it names."
    )
    details = serializers.JSONField(
        allow_null=True,
        help_text="Invalid input: the messages by field (`{field: [messages]}`) or a list of messages; "
        "otherwise null.",
    )


class ErrorSerializer(serializers.Serializer):
    """Every error answer of the API, whatever its status."""

    error = ErrorInfoSerializer()


def _first_message(details) -> str:
    if isinstance(details, dict):
        for key, value in details.items():
            inner = _first_message(value)
            return inner if key in ("detail", "non_field_errors") else f"{key}: {inner}"
    if isinstance(details, list | tuple) and details:
        return _first_message(details[0])
    return str(details)


def exception_handler(exc, context):
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(exc.message_dict if hasattr(exc, "error_dict") else exc.messages)
    elif isinstance(exc, SuiteNotFoundError | ObjectDoesNotExist):
        exc = exceptions.NotFound(str(exc) or "not found")
    elif isinstance(exc, UnknownMetricError):
        exc = exceptions.ValidationError({"metric": [str(exc)]})
    elif isinstance(exc, InvalidFilterError):
        exc = exceptions.ValidationError([str(exc)])

    response = drf_exception_handler(exc, context)
    if response is None:
        return None  # an unexpected error: let Django log it and answer 500
    if isinstance(exc, exceptions.ValidationError):
        code, details = "invalid", response.data
        message = _first_message(details)
    elif isinstance(exc, Http404):
        code, details, message = "not_found", None, str(exc) or "not found"
    elif isinstance(exc, exceptions.APIException):
        codes = exc.get_codes()
        code = codes if isinstance(codes, str) else "error"
        detail = response.data.get("detail") if isinstance(response.data, dict) else response.data
        message, details = str(detail), None
    else:  # pragma: no cover - DRF only handles the classes above
        code, message, details = "error", str(exc), None
    if response.status_code == status.HTTP_404_NOT_FOUND and code == "error":
        code = "not_found"
    response.data = {"error": {"code": code, "message": message, "details": details}}
    return response


class ApiNotFoundApi(APIView):
    """Catch-all under ``/api/v1/``: unknown paths get the API's JSON error, not an HTML page."""

    schema = None  # not part of the published API
    authentication_classes: list = []
    permission_classes = [AllowAny]

    def _not_found(self, request, *args, **kwargs):
        raise exceptions.NotFound(f"no API endpoint at {request.path}")

    get = post = put = patch = delete = head = options = _not_found
