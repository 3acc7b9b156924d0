"""One error format for the whole API: ``{"error": {"code", "message", "details"}}``.

Configured as DRF's ``EXCEPTION_HANDLER``. Django's own ``ValidationError`` (raised by services'
``full_clean``) and the selectors' ``ValueError``/``LookupError`` subclasses become 400/404.
"""

from __future__ import annotations

from django.core.exceptions import ObjectDoesNotExist
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.permissions import AllowAny
from rest_framework.views import APIView
from rest_framework.views import exception_handler as drf_exception_handler

from ..selectors.leaderboard import InvalidFilterError, SuiteNotFoundError
from ..selectors.metrics import UnknownMetricError


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
