"""Opaque public test-image ids: a keyed hash (HMAC-SHA256) of the category key and image path.

The server publishes these ids instead of file paths, so neither an id nor the order of the
published list reveals a label (``test/good/004.png`` would). The key is a server setting
(``VADI_TEST_ID_KEY``); for suites whose ground truth is public the server also publishes the
id -> file-name table, for a blind suite it does not. Pure standard library (no torch, no Django).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

__all__ = ["OPAQUE_ID_CHARS", "is_opaque_id", "opaque_id", "opaque_id_table"]

#: Hex characters of an opaque id (128 bits of the HMAC).
OPAQUE_ID_CHARS = 32


def _key_bytes(key: str | bytes) -> bytes:
    if isinstance(key, str):
        key = key.encode("utf-8")
    if not key:
        raise ValueError("the test-id key is empty; set VADI_TEST_ID_KEY")
    return key


def opaque_id(key: str | bytes, category_key: str, path_id: str) -> str:
    """The public id of one test image: 32 hex characters of HMAC-SHA256(key, category + NUL + path)."""
    message = f"{category_key}\0{path_id}".encode()
    return hmac.new(_key_bytes(key), message, hashlib.sha256).hexdigest()[:OPAQUE_ID_CHARS]


def opaque_id_table(key: str | bytes, category_key: str, path_ids: Iterable[str]) -> dict[str, str]:
    """``{opaque id: path id}`` for a category's test images, sorted by opaque id (label-blind order)."""
    table = {opaque_id(key, category_key, path): path for path in path_ids}
    return dict(sorted(table.items()))


def is_opaque_id(text: str) -> bool:
    """Whether ``text`` has the form of an opaque id (lower-case hex of the right length)."""
    return len(text) == OPAQUE_ID_CHARS and all(c in "0123456789abcdef" for c in text)
