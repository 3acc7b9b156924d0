"""``write_bundle``'s suite check and file mode; ``python -m algorithms bundle --check`` on this machine."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest

from algorithms.__main__ import main as cli_main
from algorithms.bundle import BundleWriteError, check_bundle, write_bundle
from algorithms.data import list_categories

N = 4
IDS = [f"test/good/{i:03d}.png" for i in range(N)]


def _entry(ids=IDS, *, dtype=np.float32) -> dict:
    rng = np.random.default_rng(0)
    return {"ids": list(ids), "scores": rng.random(len(ids)).astype(dtype), "maps": rng.random((len(ids), 64, 64))
            .astype(dtype)}  # fmt: skip


def test_write_bundle_refuses_one_of_nine_categories_unless_partial(tmp_path):
    out = tmp_path / "b.zip"
    with pytest.raises(BundleWriteError) as caught:
        write_bundle(out, method="m", suite="synthetic", categories={"synthetic/woven": _entry()})
    message = str(caught.value)
    assert "suite 'synthetic' has 9 categories and the bundle covers 1" in message
    assert "synthetic/screw" in message and "partial=True" in message
    assert not out.exists()
    assert write_bundle(out, method="m", suite="synthetic", categories={"synthetic/woven": _entry()}, partial=True)
    # a suite this library does not know (a server's own) is left to the server
    assert write_bundle(tmp_path / "c.zip", method="m", suite="servers-own", categories={"x/y": _entry()})


def test_write_bundle_writes_a_file_others_may_read(tmp_path):
    old = os.umask(0o022)
    try:
        path = write_bundle(tmp_path / "b.zip", method="m", suite="x", categories={"x/y": _entry()})
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
        os.umask(0o077)
        path = write_bundle(tmp_path / "c.zip", method="m", suite="x", categories={"x/y": _entry()})
        assert stat.S_IMODE(path.stat().st_mode) == 0o600  # the umask still rules
    finally:
        os.umask(old)


def test_check_lists_every_problem_at_once(tmp_path):
    keys = list_categories("synthetic")
    expected = {key: IDS for key in keys}
    categories = {key: _entry() for key in keys[1:]}  # the first category left out
    categories[keys[1]] = _entry([f"/home/me/{keys[1]}/{i}" for i in IDS])  # absolute-path ids
    path = write_bundle(tmp_path / "b.zip", method="m", suite="synthetic", categories=categories, partial=True)
    problems = check_bundle(path, expected_ids=expected)
    assert len(problems) == 3, problems  # the missing category; the unknown ids, the missing ids of that category
    assert f"missing category '{keys[0]}'" in problems[0]
    assert "4 unknown id(s)" in problems[1] and f"prefix '/home/me/{keys[1]}/' in front: strip it" in problems[1]
    assert "one of them: 'test/good/000.png'" in problems[1]
    complete = {key: _entry() for key in keys}
    ok = write_bundle(tmp_path / "ok.zip", method="m", suite="synthetic", categories=complete)
    assert check_bundle(ok, expected_ids=expected) == []


def test_cli_check_without_server_reports_and_exits_1(tmp_path, capsys):
    path = write_bundle(tmp_path / "b.zip", method="m", suite="synthetic", categories={"synthetic/woven": _entry()},
                        partial=True)  # fmt: skip
    assert cli_main(["bundle", "--check", str(path)]) == 1
    out = capsys.readouterr().out
    assert "local check (not checked against the published ids" in out
    assert "missing categories 'synthetic/grain'" in out


def test_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit):
        cli_main(["--help"])
    out = capsys.readouterr().out
    for command in ("list", "check", "run", "bundle", "submit"):
        assert command in out


def test_upload_body_streams_the_file_and_counts_every_byte(tmp_path):
    from algorithms.client import _MultipartBody

    payload = tmp_path / "b.zip"
    payload.write_bytes(bytes(range(256)) * 1000)
    counted = []
    body = _MultipartBody({"method": "My method", "suite": "mvtec"}, "archive", payload, on_read=counted.append)
    chunks = iter(lambda: body.read(8192), b"")
    raw = b"".join(chunks)
    assert len(raw) == body.length == sum(counted)
    boundary = body.content_type.split("boundary=")[1].encode()
    assert raw.startswith(b"--" + boundary) and raw.endswith(b"--" + boundary + b"--\r\n")
    assert b'name="suite"\r\n\r\nmvtec\r\n' in raw
    assert b'filename="b.zip"\r\nContent-Type: application/zip\r\n\r\n' + payload.read_bytes() + b"\r\n--" in raw


def test_token_from_the_environment_then_the_config_file(tmp_path, monkeypatch):
    from algorithms.client import ClientError, api_token

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.delenv("VADI_TOKEN", raising=False)
    with pytest.raises(ClientError, match="no API token: set VADI_TOKEN"):
        api_token()
    (tmp_path / "vadi").mkdir()
    (tmp_path / "vadi" / "token").write_text("from-file\n")
    assert api_token() == "from-file"
    monkeypatch.setenv("VADI_TOKEN", "from-env")
    assert api_token() == "from-env"
