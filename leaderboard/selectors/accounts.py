"""Account reads: a user's API token."""

from __future__ import annotations

from rest_framework.authtoken.models import Token


def api_token_get(*, user) -> Token | None:
    """The user's API token for ``Authorization: Token <key>``, if they made one."""
    return Token.objects.filter(user=user).first()
