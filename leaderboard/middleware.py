"""HTTP caching of private answers: nothing shown to a signed-in user is stored by a shared cache.

What a page or an API shows depends on who asks (``selectors.visibility``): an owner's private
and failed submissions, staff's view of everything, a user's API token. Any answer to a request
made by a signed-in user (a session, or DRF's token authentication, which sets the request's
user during the view) therefore gets ``Cache-Control: no-store, private``. Answers to anonymous
visitors hold only published data; they say ``Vary: Cookie, Authorization`` so that a shared
cache never hands them to a signed-in user in place of that user's own page. Views that always
show private data also say so themselves (``never_cache`` on the ``/submit/`` pages).
"""

from __future__ import annotations

from collections.abc import Callable

from django.contrib.auth import SESSION_KEY
from django.http import HttpRequest, HttpResponse
from django.utils.cache import patch_cache_control, patch_vary_headers

#: The Cache-Control directives of a private answer.
PRIVATE_CACHE_CONTROL = {"no_store": True, "private": True}


def make_private(response: HttpResponse) -> HttpResponse:
    """Mark ``response`` as private: ``no-store, private`` (any ``public`` or ``max-age`` goes)."""
    if "Cache-Control" in response:
        directives = [d.strip() for d in response["Cache-Control"].split(",")]
        kept = [d for d in directives if d and d.split("=")[0].strip().lower() not in ("public", "max-age", "s-maxage")]
        response["Cache-Control"] = ", ".join(kept)
        if not response["Cache-Control"]:
            del response["Cache-Control"]
    patch_cache_control(response, **PRIVATE_CACHE_CONTROL)
    return response


class PrivateResponsesMiddleware:
    """``no-store, private`` for every answer to a signed-in user; ``Vary: Cookie, Authorization`` for all."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if self.signed_in(request):
            make_private(response)
        patch_vary_headers(response, ("Cookie", "Authorization"))
        return response

    @staticmethod
    def signed_in(request: HttpRequest) -> bool:
        """A request with credentials: an ``Authorization`` header, a signed-in session, or an authenticated user.

        The session is checked too because a view may answer as anonymous (an API view without
        authentication classes) to a visitor who is signed in.
        """
        if request.META.get("HTTP_AUTHORIZATION"):
            return True
        session = getattr(request, "session", None)
        if session is not None and SESSION_KEY in session:
            return True
        user = getattr(request, "user", None)
        return bool(user is not None and getattr(user, "is_authenticated", False))
