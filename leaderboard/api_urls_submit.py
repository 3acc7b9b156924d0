"""Upload API routes: ``POST /api/v1/submissions/`` (GET there still lists submissions) and its dry run.

Included in ``config/urls.py`` before ``leaderboard.api_urls`` so that the upload view, which
inherits the public list view, answers both methods on the shared path.
"""

from django.urls import path

from .apis import submit

urlpatterns = [
    path("submissions/", submit.SubmissionListCreateApi.as_view(), name="api-submission-create"),
    path("submissions/validate/", submit.SubmissionValidateApi.as_view(), name="api-submission-validate"),
]
