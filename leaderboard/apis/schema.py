"""The OpenAPI schema's rules, so that what it says is what the server does (``/api/v1/schema/``).

:class:`ApiSchema` (DRF's ``DEFAULT_SCHEMA_CLASS``) adds to every operation the error answers it
can give, each in the one format of ``apis.errors`` (the ``Error`` component), with an example:

* 400 ``invalid`` when it reads query parameters or a body (a value the server refuses);
* 401 on every operation: a token or session that is not valid is refused even where none is
  needed, and operations that need credentials answer 401 without them;
* 403 where only staff may call it, and on every write (a session's failed CSRF check);
* 404 when the path holds a key or id (missing and hidden objects answer alike);
* 415 on every write (a body in a media type the operation does not read).

Operations add their own (413 and 429 on uploads). Lists say their pagination (``count``,
``next``, ``previous``, ``results``; ``limit`` and ``offset``, checked by ``params.Pagination``).
:func:`postprocess` adds the links a client follows after a create (upload, then read the
submission; start a run, then read it). Checked by Schemathesis against a live server
(``leaderboard/tests/test_api_contract.py``).
"""

from __future__ import annotations

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiResponse
from rest_framework.permissions import IsAdminUser

from .errors import ErrorSerializer
from .examples import error as _example

INVALID = "A parameter or a field of the body is invalid; the message names it."

# The example of a 400, by the first of these parameters the operation reads (else by its body).
INVALID_EXAMPLES = {
    "metric": ("metric", "unknown metric 'f1'; expected one of: image_auroc, pixel_auroc, aupro, pl"),
    "method": ("method", "Enter a key: letters, digits, hyphens or underscores."),
    "dataset": ("dataset", "This field may not be blank."),
    "limit": ("limit", "limit must be a whole number from 1 to 1000; got '0'"),
}


def _invalid(field: str, message: str):
    return _example(400, "invalid", f"{field}: {message}", {field: [message]})


ERROR_RESPONSES = {
    401: OpenApiResponse(
        ErrorSerializer,
        description="Credentials that are not valid (a wrong token, an expired session), or none where the "
        "operation needs them. Send `Authorization: Token <key>`.",
        examples=[_example(401, "authentication_failed", "Invalid token.")],
    ),
    403: OpenApiResponse(
        ErrorSerializer,
        description="Signed in but not allowed: staff-only operations, or a session's failed CSRF check.",
        examples=[_example(403, "permission_denied", "You do not have permission to perform this action.")],
    ),
    404: OpenApiResponse(
        ErrorSerializer,
        description="No such object, or one the caller may not see (hidden and missing objects answer alike).",
        examples=[_example(404, "not_found", "No Submission matches the given query.")],
    ),
    415: OpenApiResponse(
        ErrorSerializer,
        description="The body's media type is not one this operation reads.",
        examples=[_example(415, "unsupported_media_type", 'Unsupported media type "text/plain" in request.')],
    ),
}


class ApiSchema(AutoSchema):
    """drf-spectacular's ``AutoSchema`` plus the error answers each operation can give.

    A view's ``parameter_examples`` (``{name: value}``) gives its parameters' example values,
    which the docs pages put in their example requests.
    """

    def _get_parameters(self):
        parameters = super()._get_parameters()
        examples = getattr(self.view, "parameter_examples", {})
        for parameter in parameters:
            if parameter["name"] in examples:
                parameter["example"] = examples[parameter["name"]]
        return parameters

    def _error_statuses(self) -> list[int]:
        statuses = [401]
        view = self.view
        writes = self.method in ("POST", "PUT", "PATCH", "DELETE")
        reads_query = any(p.get("in") == "query" for p in self._get_parameters())
        if reads_query or writes:
            statuses.append(400)
        if writes or any(isinstance(p, IsAdminUser) for p in view.get_permissions()):
            statuses.append(403)
        if "{" in self.path:
            statuses.append(404)
        if writes:
            statuses.append(415)
        return sorted(statuses)

    def _invalid_response(self) -> OpenApiResponse:
        """The 400: the view's ``invalid_example`` (for a body), else one for a parameter it reads."""
        example = getattr(self.view, "invalid_example", None) if self.method in ("POST", "PUT", "PATCH") else None
        if example is None:
            names = {p["name"] for p in self._get_parameters() if p.get("in") == "query"}
            example = _invalid(*next(v for k, v in INVALID_EXAMPLES.items() if k in names))
        return OpenApiResponse(ErrorSerializer, description=INVALID, examples=[example])

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        if not getattr(self.view, "authentication_classes", None):
            return responses  # pragma: no cover - every API view authenticates
        for status in self._error_statuses():
            if str(status) not in responses:
                response = self._invalid_response() if status == 400 else ERROR_RESPONSES[status]
                responses[str(status)] = self._get_response_for_code(response, str(status), direction=direction)
        return dict(sorted(responses.items()))


# Links: what a client does with a create's answer (OpenAPI 3.0 "links", followed by Schemathesis'
# stateful tests and shown in the docs).
LINKS = {
    "submissions_create": {
        "201": {
            "GetSubmission": {
                "operationId": "submissions_retrieve",
                "parameters": {"id": "$response.body#/id"},
                "description": "The submission's status, as it is validated and scored.",
            }
        }
    },
    "staff_benchmark_runs_create": {
        "201": {
            "GetBenchmarkRun": {
                "operationId": "staff_benchmark_runs_retrieve",
                "parameters": {"run_id": "$response.body#/0/id"},
                "description": "The first run started, with its jobs' progress.",
            }
        }
    },
}


def postprocess(result, generator, request, public):
    """drf-spectacular postprocessing hook: add :data:`LINKS` to the create operations' answers."""
    for path_item in result.get("paths", {}).values():
        for operation in path_item.values():
            for status, links in LINKS.get(operation.get("operationId"), {}).items():
                operation["responses"][status]["links"] = links
    return result
