"""Upload API: ``POST /api/v1/submissions/`` (multipart; token or session authentication), and its
dry run ``POST /api/v1/submissions/validate/`` (every problem at once; nothing scored or written).

``GET`` on the same URL lists submissions (the public API's ``SubmissionListApi``, inherited);
status is read from ``/api/v1/submissions/<id>/`` or the page ``/submissions/<id>/``.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from django.urls import reverse
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.authentication import SessionAuthentication, TokenAuthentication
from rest_framework.exceptions import APIException, Throttled
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.permissions import SAFE_METHODS, AllowAny, IsAuthenticated
from rest_framework.response import Response
from rest_framework.throttling import UserRateThrottle
from rest_framework.views import APIView

from ..models import Visibility
from ..services.submissions import QuotaExceeded, submission_create, submission_validate
from ..uploads import BundleSizeLimitHandler
from . import examples
from .errors import ErrorSerializer
from .public import SubmissionListApi
from .serializers import SubmissionOutputSerializer

BUNDLE_FORMAT = """
Upload one **bundle**: a zip archive holding

* `manifest.json`: `{"format_version": 2, "method": "<name>", "suite": "<suite key>",
  "categories": ["mvtec/bottle", ...]}`, listing exactly the suite's categories;
* per category, `<dataset>/<category>/ids.txt` (one test-image id per line, the opaque ids published at
  `/api/v1/categories/<key>/test-ids`, each exactly once, any order; `/test-files` maps them to file
  names for suites whose ground truth is public; format 1 with file-path ids is still read for those),
  `scores.npy` (N,) and `maps.npy` (N, H, W): float16 or float32 little-endian `.npy` files, no pickles,
  finite values, 64 <= H, W <= 1024 (maps are resized bilinearly to 256 x 256 for scoring).

Nothing else may be in the archive (no nested archives, no other files). Limits on the archive's size,
its uncompressed size, its member count and the compression ratio apply. The bundle is validated
completely on a worker before anything is scored; a problem fails the submission with a message naming
the member. Write bundles with `algorithms.bundle.write_bundle` or
`python -m algorithms bundle --predictions RUN_DIR --method NAME --suite SUITE --out bundle.zip`.
Full description: `docs/bundle-format.md`.

Cheap checks run in the request (zip signature and structure, size limits, `manifest.json` present
and parseable, its suite, method and categories against the fields): a problem answers 400 with a message
saying what to change. `suite` and `method` may be left empty: the manifest's are used.

Quotas: `VADI_SUBMISSIONS_PER_DAY` per 24 hours (every upload counts, failed ones included, except
failures of our own infrastructure, which say so) and `VADI_SUBMISSIONS_CONCURRENT` waiting or in
scoring; over quota answers 429. An accepted upload is never lost: when no worker can be reached it
answers 201 with `status` `queued` ("accepted, waiting for a worker") and is scored once one can.
"""


class BundleTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "bundle_too_large"
    default_detail = "the bundle is larger than the limit"


class SubmissionCreatedSerializer(SubmissionOutputSerializer):
    status_url = serializers.SerializerMethodField(help_text="The submission's status page.")
    api_url = serializers.SerializerMethodField(help_text="The submission's JSON status in this API.")

    class Meta(SubmissionOutputSerializer.Meta):
        fields = [*SubmissionOutputSerializer.Meta.fields, "archive_size", "archive_sha256", "status_url", "api_url"]

    def get_status_url(self, obj) -> str:
        return self.context["request"].build_absolute_uri(reverse("leaderboard:submission-detail", args=[obj.pk]))

    def get_api_url(self, obj) -> str:
        return self.context["request"].build_absolute_uri(reverse("api-submission-detail", args=[obj.pk]))


class BundleSizeLimitMixin:
    """Upload views: stop storing a body that passes ``VADI_BUNDLE_MAX_BYTES`` before anything reads it."""

    def initialize_request(self, request, *args, **kwargs):
        self.size_limit = None
        if request.method == "POST":
            self.size_limit = BundleSizeLimitHandler(request)
            request.upload_handlers.insert(0, self.size_limit)
        return super().initialize_request(request, *args, **kwargs)

    def refuse_oversized_bundle(self) -> None:
        """Raise ``BundleTooLarge`` (413) when the handler cut the upload short."""
        if self.size_limit is not None and self.size_limit.exceeded:
            raise BundleTooLarge(self.size_limit.message)


BUNDLE_TOO_LARGE_RESPONSE = OpenApiResponse(
    ErrorSerializer,
    description="The bundle is larger than `VADI_BUNDLE_MAX_BYTES`.",
    examples=[examples.error(413, "bundle_too_large", "the bundle is larger than the limit")],
)


class SubmissionListCreateApi(BundleSizeLimitMixin, SubmissionListApi):
    """List submissions (anyone) or upload a bundle for scoring (signed-in users)."""

    authentication_classes = [TokenAuthentication, SessionAuthentication]
    parser_classes = [MultiPartParser, FormParser]
    invalid_example = examples.error(
        400,
        "invalid",
        "suite: unknown suite 'nope' (known: vadi, mvtec, visa, synthetic)",
        {"suite": ["unknown suite 'nope' (known: vadi, mvtec, visa, synthetic)"]},
    )

    @extend_schema_serializer(component_name="SubmissionUpload")
    class InputSerializer(serializers.Serializer):
        method = serializers.CharField(
            max_length=120,
            required=False,
            allow_blank=True,
            default="",
            help_text="Method name; a new name creates it, owned by you. Empty: the manifest's.",
        )
        suite = serializers.SlugField(
            required=False,
            allow_blank=True,
            default="",
            help_text="Suite key: vadi, mvtec, visa or synthetic. Empty: the manifest's.",
        )
        archive = serializers.FileField(help_text="The bundle zip.")
        visibility = serializers.ChoiceField(choices=Visibility.choices, default=Visibility.PUBLIC)
        description = serializers.CharField(required=False, allow_blank=True, max_length=5000, default="")

    def get_permissions(self):
        if self.request.method in SAFE_METHODS:
            return [AllowAny()]
        return [IsAuthenticated()]

    @extend_schema(
        operation_id="submissions_create",
        summary="Upload a bundle of anomaly maps for server-side scoring",
        description=BUNDLE_FORMAT,
        request={"multipart/form-data": InputSerializer},
        responses={
            201: SubmissionCreatedSerializer,
            413: BUNDLE_TOO_LARGE_RESPONSE,
            429: OpenApiResponse(
                ErrorSerializer,
                description="Over the daily or concurrent submission quota.",
                examples=[examples.error(429, "throttled", "You have 3 submissions waiting or being scored.")],
            ),
        },
        examples=[
            examples.request(
                "curl",
                {"method": "My method", "suite": "mvtec", "archive": "bundle.zip", "visibility": "public"},
                description='curl -H "Authorization: Token <key>" -F method="My method" -F suite=mvtec '
                "-F archive=@bundle.zip https://<host>/api/v1/submissions/",
                media_type="multipart/form-data",
            ),
            examples.SUBMISSION_CREATED,
        ],
    )
    def post(self, request):
        data = request.data
        self.refuse_oversized_bundle()
        payload = self.InputSerializer(data=data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        try:
            submission = submission_create(
                owner=request.user,
                method_name=data["method"],
                suite_key=data["suite"],
                archive=data["archive"],
                visibility=data["visibility"],
                description=data.get("description", ""),
            )
        except QuotaExceeded as exc:  # Retry-After: when the next daily slot frees
            raise Throttled(wait=exc.retry_after_s, detail=" ".join(exc.messages)) from exc
        except DjangoValidationError as exc:
            detail = exc.message_dict if hasattr(exc, "error_dict") else exc.messages
            raise serializers.ValidationError(detail) from exc
        body = SubmissionCreatedSerializer(submission, context={"request": request}).data
        return Response(body, status=status.HTTP_201_CREATED, headers={"Location": body["api_url"]})


class ValidateRateThrottle(UserRateThrottle):
    """The dry run's own rate limit per user: ``VADI_VALIDATE_RATE`` (e.g. ``"60/hour"``), read on every request."""

    scope = "submission_validate"

    def get_rate(self):
        from django.conf import settings

        return getattr(settings, "VADI_VALIDATE_RATE", "60/hour")

    def allow_request(self, request, view):
        self.rate = self.get_rate()
        self.num_requests, self.duration = self.parse_rate(self.rate)
        return super().allow_request(request, view)


class ProblemSerializer(serializers.Serializer):
    field = serializers.ChoiceField(choices=["archive", "suite", "method"], help_text="The upload field to change.")
    member = serializers.CharField(allow_null=True, help_text="The archive member at fault, when there is one.")
    message = serializers.CharField(help_text="What is wrong and what to change.")


@extend_schema_serializer(component_name="SubmissionValidation")
class ValidationOutputSerializer(serializers.Serializer):
    valid = serializers.BooleanField(help_text="True when an upload of this bundle would be accepted and scored.")
    problems = ProblemSerializer(many=True, help_text="Every problem found (empty when valid).")


@extend_schema_serializer(component_name="SubmissionCheck")
class ValidateInputSerializer(SubmissionListCreateApi.InputSerializer):
    """The upload's fields; an empty file is one more problem in the answer, not a 400."""

    archive = serializers.FileField(allow_empty_file=True, help_text="The bundle zip.")


class SubmissionValidateApi(BundleSizeLimitMixin, APIView):
    """Dry run of an upload: every validation against the published ids; nothing scored, written or counted."""

    authentication_classes = [TokenAuthentication, SessionAuthentication]
    permission_classes = [IsAuthenticated]
    parser_classes = [MultiPartParser, FormParser]
    throttle_classes = [ValidateRateThrottle]
    invalid_example = examples.error(
        400, "invalid", "archive: No file was submitted.", {"archive": ["No file was submitted."]}
    )

    @extend_schema(
        operation_id="submissions_validate",
        summary="Check a bundle without submitting it (dry run; no quota used)",
        description=(
            "Runs every validation of an upload (`POST /api/v1/submissions/`, same fields) and of the scoring "
            "worker against the published test ids: the archive's structure, the manifest against the suite "
            "and method, the suite's category set, the member set, each category's ids, and each `.npy` "
            "member's header, shape, dtype and values. Scores nothing, writes nothing and does not count "
            "against the daily submission quota; it has its own rate limit (`VADI_VALIDATE_RATE`, per user). "
            "Answers 200 with every problem at once: `valid` is true when the list is empty.\n\n"
            "From the command line: `python -m algorithms bundle --check bundle.zip --server https://<host>`."
        ),
        request={"multipart/form-data": ValidateInputSerializer},
        responses={
            200: ValidationOutputSerializer,
            413: BUNDLE_TOO_LARGE_RESPONSE,
            429: OpenApiResponse(
                ErrorSerializer,
                description="Over the dry run's rate limit (`VADI_VALIDATE_RATE`); `Retry-After` says when to retry.",
                examples=[examples.error(429, "throttled", "Request was throttled. Expected available in 52 seconds.")],
            ),
        },
        examples=[
            examples.request(
                "curl",
                {"method": "My method", "suite": "mvtec", "archive": "bundle.zip", "visibility": "public"},
                description='curl -H "Authorization: Token <key>" -F archive=@bundle.zip '
                "https://<host>/api/v1/submissions/validate/",
                media_type="multipart/form-data",
            ),
            examples.VALIDATION_VALID,
            examples.VALIDATION_PROBLEMS,
        ],
    )
    def post(self, request):
        self.refuse_oversized_bundle()
        payload = ValidateInputSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        problems = submission_validate(
            owner=request.user, archive=data["archive"], suite_key=data["suite"], method_name=data["method"]
        )
        return Response({"valid": not problems, "problems": problems}, status=status.HTTP_200_OK)
