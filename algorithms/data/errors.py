"""The one exception of :mod:`algorithms.data`."""

from __future__ import annotations

__all__ = ["DatasetError"]


class DatasetError(ValueError):
    """A dataset root is missing or malformed; the message names the path and what was expected."""
