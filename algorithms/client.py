"""Talk to a leaderboard server: upload a bundle, follow its scoring, dry-run a bundle.

``python -m algorithms submit BUNDLE --method NAME --suite KEY --server URL`` uploads a bundle
(``POST /api/v1/submissions/``) with a progress bar, follows the submission
(``GET /api/v1/submissions/<id>/``) until it is ``done`` or ``failed``, and prints the
per-category results or the error; exit code 0 when scored, 1 otherwise.
``python -m algorithms submit --anomalib mvtec/bottle=bottle.pt [--anomalib KEY=FILE ...] --method NAME
--suite KEY --server URL`` first builds the bundle from anomalib's saved predictions
(:mod:`algorithms.anomalib_bundle`: image paths -> published ids, checked; ``docs/anomalib.md``).

The API token (your account page on the site, ``/accounts/me/``) is read from the environment
variable ``VADI_TOKEN``, else from the file ``$XDG_CONFIG_HOME/vadi/token``
(``~/.config/vadi/token``), which holds the token alone (keep it ``chmod 600``).

Standard library only (``urllib``; ``--anomalib`` imports the bundle writer, numpy and torch);
``tqdm`` draws the bar when it is installed and the output is a terminal.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, BinaryIO
from urllib.error import HTTPError, URLError
from urllib.parse import urljoin
from urllib.request import Request, urlopen

__all__ = ["ClientError", "api_token", "follow_submission", "main", "upload_bundle", "validate_remote"]

TOKEN_ENV = "VADI_TOKEN"
SERVER_ENV = "VADI_SERVER"
FINISHED = ("done", "failed")
USER_AGENT = "vadi-client/1"
ANOMALIB_HELP = (
    "FILE: one category's anomalib predictions, saved with torch.save(engine.predict(...), FILE); repeat "
    "--anomalib once per category. FILE is unpickled (torch.load(weights_only=False)), which runs code chosen by "
    "its author: give only files you made yourself"
)


class ClientError(RuntimeError):
    """The server could not be reached, refused the request, or answered something unexpected."""


def token_file() -> Path:
    """``$XDG_CONFIG_HOME/vadi/token`` (``~/.config/vadi/token``)."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "vadi" / "token"


def api_token(explicit: str | None = None) -> str:
    """The API token: ``explicit``, else ``$VADI_TOKEN``, else the token file; :class:`ClientError` if none."""
    token = explicit or os.environ.get(TOKEN_ENV, "").strip()
    if token:
        return token
    path = token_file()
    try:
        token = path.read_text(encoding="utf-8").strip()
    except OSError:
        token = ""
    if not token:
        raise ClientError(
            f"no API token: set {TOKEN_ENV}, or write the token to {path} (create one on the site's account "
            "page, /accounts/me/)"
        )
    return token


class _MultipartBody:
    """A ``multipart/form-data`` body streamed from disk (never all in memory), reporting bytes read."""

    def __init__(self, fields: dict[str, str], file_field: str, path: Path, on_read: Callable[[int], None]) -> None:
        boundary = uuid.uuid4().hex
        self.content_type = f"multipart/form-data; boundary={boundary}"
        head = b""
        for name, value in fields.items():
            head += f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        head += (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{file_field}"; filename="{path.name}"\r\n'
            "Content-Type: application/zip\r\n\r\n"
        ).encode()
        self._parts: list[bytes | Path] = [head, path, f"\r\n--{boundary}--\r\n".encode()]
        self.length = len(head) + path.stat().st_size + len(self._parts[2])
        self._on_read = on_read
        self._current: BinaryIO | None = None
        self._index = 0
        self._buffer = b""

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = self.length
        out = b""
        while len(out) < size and self._index < len(self._parts):
            part = self._parts[self._index]
            if isinstance(part, bytes):
                if not self._buffer:
                    self._buffer = part
                take, self._buffer = self._buffer[: size - len(out)], self._buffer[size - len(out) :]
                out += take
                if not self._buffer:
                    self._index += 1
            else:
                if self._current is None:
                    self._current = open(part, "rb")  # noqa: SIM115  (closed when exhausted)
                chunk = self._current.read(size - len(out))
                if chunk:
                    out += chunk
                else:
                    self._current.close()
                    self._current = None
                    self._index += 1
        self._on_read(len(out))
        return out


def _bar(total: int, *, description: str, quiet: bool):
    """A tqdm bar in bytes on a terminal; None when quiet, not a terminal, or tqdm is missing."""
    if quiet or not sys.stderr.isatty():
        return None
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency of the library
        return None
    return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=description, file=sys.stderr)


def _call(request: Request, *, timeout: float) -> tuple[int, dict[str, Any], dict[str, str]]:
    """``(status, JSON body, headers)``; an HTTP error answer is returned, not raised."""
    try:
        with urlopen(request, timeout=timeout) as answer:
            status, raw, headers = answer.status, answer.read(), dict(answer.headers)
    except HTTPError as exc:
        status, raw, headers = exc.code, exc.read(), dict(exc.headers or {})
    except (URLError, OSError) as exc:
        raise ClientError(f"cannot reach {request.full_url}: {getattr(exc, 'reason', exc)}") from exc
    try:
        body = json.loads(raw.decode("utf-8")) if raw else {}
    except (UnicodeDecodeError, ValueError):
        body = {"error": {"message": raw[:300].decode("utf-8", "replace")}}
    return status, body if isinstance(body, dict) else {"value": body}, headers


def _error_text(status: int, body: dict[str, Any], headers: dict[str, str]) -> str:
    error = body.get("error") if isinstance(body.get("error"), dict) else {}
    message = error.get("message") or body.get("detail") or json.dumps(body)[:300]
    text = f"HTTP {status}: {message}"
    details = error.get("details")
    if isinstance(details, dict):
        text += "".join(
            f"\n  {field}: {'; '.join(map(str, msgs)) if isinstance(msgs, list) else msgs}"
            for field, msgs in details.items()
            if f"{field}: " not in message
        )
    retry = {key.lower(): value for key, value in headers.items()}.get("retry-after")
    if status == 429 and retry:
        text += f" (retry after {retry} s)"
    return text


def _post_bundle(
    server: str, path: str, bundle: Path, fields: dict[str, str], *, token: str, quiet: bool, timeout: float
) -> tuple[int, dict[str, Any], dict[str, str]]:
    bundle = Path(bundle)
    if not bundle.is_file():
        raise ClientError(f"{bundle}: no such file")
    bar = _bar(bundle.stat().st_size, description="upload", quiet=quiet)
    body = _MultipartBody(fields, "archive", bundle, on_read=(bar.update if bar is not None else lambda n: None))
    request = Request(
        urljoin(server.rstrip("/") + "/", path.lstrip("/")),
        data=body,  # type: ignore[arg-type]  (a file-like body, sent in blocks)
        method="POST",
        headers={
            "Authorization": f"Token {token}",
            "Content-Type": body.content_type,
            "Content-Length": str(body.length),
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
        },
    )
    try:
        return _call(request, timeout=timeout)
    finally:
        if bar is not None:
            bar.close()


def _get(url: str, *, token: str | None, timeout: float) -> tuple[int, dict[str, Any], dict[str, str]]:
    headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
    if token:
        headers["Authorization"] = f"Token {token}"
    return _call(Request(url, headers=headers), timeout=timeout)


def upload_bundle(
    bundle: str | os.PathLike,
    *,
    server: str,
    token: str,
    method: str = "",
    suite: str = "",
    visibility: str = "public",
    description: str = "",
    quiet: bool = False,
    timeout: float = 3600,
) -> dict[str, Any]:
    """Upload a bundle (``POST /api/v1/submissions/``); the created submission's JSON (``id``, ``api_url``...)."""
    fields = {"method": method, "suite": suite, "visibility": visibility, "description": description}
    status, body, headers = _post_bundle(
        server, "/api/v1/submissions/", Path(bundle), fields, token=token, quiet=quiet, timeout=timeout
    )
    if status != 201:
        raise ClientError(_error_text(status, body, headers))
    return body


def follow_submission(
    url: str,
    *,
    token: str,
    interval: float = 2.0,
    max_interval: float = 15.0,
    timeout: float | None = None,
    on_change: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Poll a submission's API URL until it is ``done`` or ``failed``; its last JSON.

    ``on_change(body)`` is called whenever the status, progress or message changes. The wait
    between polls grows from ``interval`` to ``max_interval``.
    """
    started = time.monotonic()
    seen = None
    wait = interval
    while True:
        status, body, headers = _get(url, token=token, timeout=60)
        if status != 200:
            raise ClientError(_error_text(status, body, headers))
        state = (body.get("status"), body.get("progress"), body.get("progress_message"))
        if state != seen:
            seen = state
            wait = interval
            if on_change is not None:
                on_change(body)
        if body.get("status") in FINISHED:
            return body
        if timeout is not None and time.monotonic() - started > timeout:
            raise ClientError(f"still {body.get('status')} after {timeout:g} s; follow it at {url}")
        time.sleep(wait)
        wait = min(max_interval, wait * 1.5)


def validate_remote(
    bundle: str | os.PathLike,
    *,
    server: str,
    token: str,
    method: str = "",
    suite: str = "",
    quiet: bool = False,
    timeout: float = 3600,
) -> dict[str, Any]:
    """The server's dry run (``POST /api/v1/submissions/validate/``): ``{"valid", "problems"}``."""
    fields = {"method": method, "suite": suite}
    status, body, headers = _post_bundle(
        server, "/api/v1/submissions/validate/", Path(bundle), fields, token=token, quiet=quiet, timeout=timeout
    )
    if status != 200:
        raise ClientError(_error_text(status, body, headers))
    return body


def published_test_ids(server: str, category: str, *, timeout: float = 60) -> list[str]:
    """The test ids the server publishes for a category (``GET /api/v1/categories/<key>/test-ids``)."""
    url = urljoin(server.rstrip("/") + "/", f"api/v1/categories/{category}/test-ids")
    status, body, headers = _get(url, token=None, timeout=timeout)
    if status != 200:
        raise ClientError(f"{category}: {_error_text(status, body, headers)}")
    return [str(image_id) for image_id in body.get("test_ids", [])]


def format_results(results: Sequence[dict[str, Any]]) -> str:
    """The per-category results as a text table (categories in rows, metrics in columns)."""
    if not results:
        return "(no results)"
    metrics: list[str] = []
    for row in results:
        metrics += [m for m in row.get("metrics", {}) if m not in metrics]
    order = ("image_auroc", "pixel_auroc", "aupro", "pl")  # the leaderboard's columns first, then any others
    metrics.sort(key=lambda m: (order.index(m) if m in order else len(order), m))
    width = max(len("category"), *(len(row["category"]) for row in results))
    lines = [f"{'category':<{width}}  " + "  ".join(f"{m:>11}" for m in metrics)]
    for row in sorted(results, key=lambda r: r["category"]):
        values = row.get("metrics", {})
        lines.append(
            f"{row['category']:<{width}}  "
            + "  ".join(f"{values[m]:>11.4f}" if m in values else f"{'-':>11}" for m in metrics)
        )
    if len(results) > 1:
        means = []
        for m in metrics:
            present = [row["metrics"][m] for row in results if m in row.get("metrics", {})]
            means.append(f"{sum(present) / len(present):>11.4f}" if present else f"{'-':>11}")
        lines.append(f"{'mean':<{width}}  " + "  ".join(means))
    return "\n".join(lines)


def parse_anomalib_option(text: str) -> tuple[str, Path]:
    """``KEY=FILE`` (``--anomalib synthetic/woven=preds.pt``) as ``(category key, path)``; ValueError if malformed."""
    key, sep, file = text.partition("=")
    if not sep or not key or not file or key.count("/") != 1:
        raise ValueError(f"--anomalib expects CATEGORY_KEY=FILE (e.g. mvtec/bottle=bottle.pt), got {text!r}")
    return key, Path(file)


def main(argv: Sequence[str] | None = None, *, build_anomalib: Callable[..., Any] | None = None) -> int:
    """``python -m algorithms submit``: upload, follow, print the results. Returns the exit code.

    ``build_anomalib`` builds the bundle for ``--anomalib``
    (:func:`algorithms.anomalib_bundle.bundle_from_anomalib_files`; ``python -m algorithms`` passes
    it, keeping this module free of the writer's imports).
    """
    parser = argparse.ArgumentParser(
        prog="python -m algorithms submit",
        description=(
            "Upload a bundle (or build one from anomalib's predictions: --anomalib) to a leaderboard server, follow "
            "its scoring and print the per-category results "
            f"(exit code 0) or the error (1). The API token is read from ${TOKEN_ENV} or {token_file()}."
        ),
    )
    parser.add_argument(
        "bundle", type=Path, nargs="?", default=None,
        help="the bundle zip (python -m algorithms bundle writes one); or give --anomalib instead",
    )  # fmt: skip
    parser.add_argument("--method", default="", help="method name (default: the bundle manifest's)")
    parser.add_argument("--suite", default="", help="suite key (default: the bundle manifest's)")
    parser.add_argument(
        "--anomalib", action="append", default=[], metavar="CATEGORY_KEY=FILE",
        help="instead of a bundle: build one from anomalib's predictions (with --method and --suite; the id tables "
        "and published ids are read from --server), then upload it. " + ANOMALIB_HELP,
    )  # fmt: skip
    parser.add_argument(
        "--out", type=Path, default=None,
        help="with --anomalib: keep the bundle in this file (default: a temporary file, deleted after the upload)",
    )  # fmt: skip
    parser.add_argument(
        "--allow-ties", action="store_true",
        help="with --anomalib: submit clamped or tied scores (anomalib's normalisation) with a warning, not refuse",
    )  # fmt: skip
    parser.add_argument(
        "--server", default=os.environ.get(SERVER_ENV), required=SERVER_ENV not in os.environ,
        help=f"the server's URL, e.g. https://leaderboard.example.org (default ${SERVER_ENV})",
    )  # fmt: skip
    parser.add_argument("--visibility", choices=["public", "private"], default="public")
    parser.add_argument("--description", default="", help="free text stored with the submission")
    parser.add_argument("--check-first", action="store_true", help="run the server's dry run first; stop on problems")
    parser.add_argument("--no-follow", action="store_true", help="upload only; do not wait for the results")
    parser.add_argument("--timeout", type=float, default=None, help="give up following after this many seconds")
    parser.add_argument("--json", action="store_true", help="print the final submission as JSON")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar or status lines")
    args = parser.parse_args(argv)
    if args.anomalib and args.bundle is not None:
        parser.error("give a bundle or --anomalib, not both")
    if not args.anomalib and args.bundle is None:
        parser.error("the following arguments are required: bundle (or --anomalib CATEGORY_KEY=FILE)")
    if args.anomalib and (not args.method or not args.suite):
        parser.error("--anomalib needs --method and --suite (they are written into the bundle's manifest)")
    if not args.anomalib and (args.out is not None or args.allow_ties):
        parser.error("--out and --allow-ties go with --anomalib")

    def say(text: str) -> None:
        if not args.quiet:
            print(text, file=sys.stderr, flush=True)

    if args.anomalib:
        try:
            api_token()  # before the bundle is built: no token, no work
        except ClientError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        with tempfile.TemporaryDirectory(prefix="vadi-bundle-") as tmp:
            code = _build_from_anomalib(args, Path(tmp) / "bundle.zip", say, build_anomalib)
            if code:
                return code
            return _submit(args, say)
    return _submit(args, say)


def _build_from_anomalib(
    args: argparse.Namespace, default_out: Path, say: Callable[[str], None], build: Callable[..., Any] | None
) -> int:
    """``submit --anomalib``: write the bundle (``args.bundle`` becomes it); 0, or 1 with the error printed."""
    if build is None:
        print("error: --anomalib: run this as `python -m algorithms submit --anomalib ...`", file=sys.stderr)
        return 1
    try:
        files = [parse_anomalib_option(text) for text in args.anomalib]
        made = build(
            files, path=args.out or default_out, method=args.method, suite=args.suite, server=args.server,
            allow_ties=args.allow_ties, description=args.description,
        )  # fmt: skip
    except (ValueError, ClientError) as exc:  # BundleWriteError is a ValueError
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for warning in made.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    images = sum(made.counts.values())
    say(f"bundle {made.path if args.out else '(temporary)'}: {len(made.counts)} categories, {images} images")
    args.bundle = made.path
    return 0


def _submit(args: argparse.Namespace, say: Callable[[str], None]) -> int:
    """Upload ``args.bundle``, follow it, print the results; the exit code."""
    try:
        token = api_token()
        if args.check_first:
            report = validate_remote(
                args.bundle, server=args.server, token=token, method=args.method, suite=args.suite, quiet=args.quiet
            )
            if not report.get("valid"):
                print(format_problems(report.get("problems", [])), file=sys.stderr)
                return 1
        created = upload_bundle(
            args.bundle, server=args.server, token=token, method=args.method, suite=args.suite,
            visibility=args.visibility, description=args.description, quiet=args.quiet,
        )  # fmt: skip
        say(f"submission {created['id']} accepted ({created.get('status')}): {created.get('status_url', '')}")
        if args.no_follow:
            print(json.dumps(created, indent=2) if args.json else created.get("api_url", ""))
            return 0

        def changed(body: dict[str, Any]) -> None:
            progress = body.get("progress")
            shown = f" {progress:.0%}" if isinstance(progress, int | float) else ""
            say(f"  {body.get('status')}{shown} {body.get('progress_message') or ''}".rstrip())

        final = follow_submission(created["api_url"], token=token, timeout=args.timeout, on_change=changed)
    except ClientError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(final, indent=2))
    if final.get("status") != "done":
        message = final.get("error_message") or "no message"
        print(f"error: submission {final.get('id')} failed: {message}", file=sys.stderr)
        return 1
    if not args.json:
        print(f"submission {final.get('id')} ({final.get('method')}, suite {final.get('suite')}): done")
        if final.get("review_status") not in (None, "", "none", "approved"):
            print(f"review: {final.get('review_status')} (held for an admin's review before publication)")
        print(format_results(final.get("results") or []))
    return 0


def format_problems(problems: Sequence[dict[str, Any]]) -> str:
    """The dry run's problems, one per line."""
    if not problems:
        return "valid: no problems"
    lines = [f"{len(problems)} problem(s):"]
    for problem in problems:
        lines.append(f"  - [{problem.get('field', 'archive')}] {problem.get('message')}")
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
