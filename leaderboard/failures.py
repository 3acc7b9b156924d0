"""The one place that turns an internal failure into a message anyone may read.

Messages on job rows (``error_message``, ``progress_message``) are shown to the people who may
see the job: the uploader of a submission, everyone for a published benchmark run. They never
contain server paths, environment-variable names, tracebacks, exception class names or server
addresses. The detail (what the exception said, its traceback) goes to ``error_detail``, which
only staff see (the admin), and to the logs.

* :func:`public_message` makes any text public: it removes tracebacks and exception class
  names and replaces absolute paths, environment-variable names and IP addresses with
  placeholders. Idempotent; text that holds none of these comes back unchanged (whitespace
  aside), so the messages our validators write for users (a bundle's member names, relative
  category keys such as ``mvtec/bottle``) stay as they are.
* :func:`failure_from_exception` turns an unexpected exception into a :class:`Failure`: a fixed
  public message chosen by the caller (nothing of the exception in it) and the staff detail.

Pure Python: imports nothing of ours (the bottom of the leaderboard's layers).
"""

from __future__ import annotations

import re
import traceback
from dataclasses import dataclass

#: What replaces the parts of a message that must not be shown.
PATH_PLACEHOLDER = "<server path>"
SETTING_PLACEHOLDER = "<setting>"
ADDRESS_PLACEHOLDER = "<address>"

_TRACEBACK_HEAD = re.compile(r"Traceback \(most recent call last\):")
_TRACEBACK_FRAME = re.compile(r'^\s*File "[^"]*", line \d+.*$', re.M)
# ``module.sub.ClassNameError:`` or a bare ``ClassNameError``: the names Python gives exceptions.
_EXCEPTION_SUFFIXES = (
    "Error|Exception|Exceeded|Warning|Interrupt|Exit|Unavailable|DoesNotExist|NotFound|Timeout|Refused|Iteration"
)
_EXCEPTION_NAME = re.compile(
    rf"(?<![\w.])(?:[A-Za-z_][\w]*\.)*[A-Z][A-Za-z0-9]*(?:{_EXCEPTION_SUFFIXES})\b:?"
)
# Absolute POSIX paths (``/srv/data/x.png``, ``'/tmp'``), home-relative and Windows ones. A slash
# after a word character, a dot, a colon or another slash starts no path: ``3/5``, ``and/or``,
# ``mvtec/bottle``, ``./var`` and URLs stay as they are.
_POSIX_PATH = re.compile(r"(?<![\w./:~-])(?:~|\$HOME)?/[^\s/'\"`:;,()<>\[\]{}]+(?:/[^\s/'\"`:;,()<>\[\]{}]*)*")
_HOME_PATH = re.compile(r"(?<![\w./:-])~(?:[\w.-]*)/[^\s'\"`:;,()<>]*")
_WINDOWS_PATH = re.compile(r"\b[A-Za-z]:\\[^\s'\"`:;,()<>]*")
_FILE_URL = re.compile(r"\bfile://\S*")
# ``VADI_MVTEC_ROOT``, ``DJANGO_SECRET_KEY``, ``$HOME``, ``${CUDA_HOME}``, ``%APPDATA%``.
_ENV_NAME = re.compile(r"\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+\b")
_ENV_REFERENCE = re.compile(r"\$\{?[A-Za-z_][A-Za-z0-9_]*\}?|%[A-Za-z_][A-Za-z0-9_]*%")
_IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?::\d+)?(?![\w.])")
_IPV6_BRACKETED = re.compile(r"\[[0-9A-Fa-f:]{2,}\](?::\d+)?")


def _drop_tracebacks(text: str) -> str:
    """A traceback becomes its last line (the exception's own text); frame lines go."""
    while True:
        match = _TRACEBACK_HEAD.search(text)
        if match is None:
            break
        before, rest = text[: match.start()], text[match.end() :]
        lines = [line for line in rest.splitlines() if line.strip()]
        # The frames are indented ("  File ...", "    code"); the exception line is not.
        tail = [line for line in lines if not line.startswith((" ", "\t"))]
        text = before + (tail[-1] if tail else "")
    return _TRACEBACK_FRAME.sub("", text)


def public_message(text: object, *, own_input: bool = False) -> str:
    """``text`` without what only staff may read; one space between words, stripped.

    Removes tracebacks (keeping the exception's own line) and exception class names
    (``DatasetError: ...`` becomes ``...``); replaces absolute server paths with
    :data:`PATH_PLACEHOLDER`, environment-variable names and references with
    :data:`SETTING_PLACEHOLDER`, IPv4 and bracketed IPv6 addresses with
    :data:`ADDRESS_PLACEHOLDER`. Relative paths (bundle members, category keys) are kept.

    ``own_input`` is for a message about the reader's own upload, shown only to them (an
    invalid bundle): paths in it are the member names they wrote (``'/etc/cron.d/x'``) and are
    kept; tracebacks and exception names still go. Idempotent.
    """
    original = " ".join(str(text if text is not None else "").split())
    out = _drop_tracebacks(str(text if text is not None else ""))
    if not own_input:
        out = _FILE_URL.sub(PATH_PLACEHOLDER, out)
        out = _WINDOWS_PATH.sub(PATH_PLACEHOLDER, out)
        out = _HOME_PATH.sub(PATH_PLACEHOLDER, out)
        out = _POSIX_PATH.sub(PATH_PLACEHOLDER, out)
    out = _ENV_REFERENCE.sub(SETTING_PLACEHOLDER, out)
    out = _ENV_NAME.sub(SETTING_PLACEHOLDER, out)
    out = _IPV6_BRACKETED.sub(ADDRESS_PLACEHOLDER, out)
    out = _IPV4.sub(ADDRESS_PLACEHOLDER, out)
    out = _EXCEPTION_NAME.sub("", out)
    out = " ".join(out.split())
    if out == original:
        return out.strip(" :;,")
    # Something was removed: tidy what a removed class name leaves behind ("( x)", " : x").
    out = re.sub(r"\(\s+", "(", out)
    out = re.sub(r"\s+([,;:)])", r"\1", out)
    out = re.sub(r"([:;,])\1+", r"\1", out)
    return " ".join(out.split()).strip(" :;,")


def is_public(text: object, *, own_input: bool = False) -> bool:
    """Whether ``text`` needs nothing removed to be shown (whitespace aside); see :func:`public_message`."""
    plain = " ".join(str(text if text is not None else "").split())
    return public_message(plain, own_input=own_input) == plain.strip(" :;,")


@dataclass(frozen=True)
class Failure:
    """A failure as it is recorded: ``message`` for the people who may see the job, ``detail`` for staff."""

    message: str
    detail: str = ""


def exception_detail(exc: BaseException) -> str:
    """The staff detail of an exception: its class, message and traceback."""
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).strip()


def failure_from_exception(exc: BaseException, *, public: str) -> Failure:
    """An unexpected exception as a :class:`Failure`: the fixed ``public`` message, the exception as detail.

    ``public`` is written by the caller for the person who sees the job and says nothing of
    the exception (it is passed through :func:`public_message` all the same).
    """
    return Failure(message=public_message(public), detail=exception_detail(exc))


def failure_from_text(text: object, *, detail: str = "", own_input: bool = False) -> Failure:
    """A message that may hold internal detail: its public form, and the original as detail when they differ."""
    original = str(text if text is not None else "").strip()
    message = public_message(original, own_input=own_input)
    parts = [part for part in (original if message != " ".join(original.split()) else "", detail) if part]
    return Failure(message=message, detail="\n\n".join(parts))
