"""A client generated from the schema works: list the leaderboard, upload a bundle, read its status.

The client is generated at test time with openapi-python-client (the generator researchers use
for the field's other platforms) from the live server's ``/api/v1/schema/``, into ``tmp_path``,
and imported from there: a schema change that breaks generated clients fails here. Generation
takes about 2 s of CPU, so nothing generated is committed. The live server holds the world of
``test_api_contract.py`` (a published re-benchmark, a scored submission, tokens).
"""

# The shared fixtures are imported; pytest injects them by parameter name.
# ruff: noqa: F811

from __future__ import annotations

import importlib
import io
import json
import subprocess
import sys
from pathlib import Path
from urllib.request import urlopen

import pytest

from evaluation.tests.test_submissions import SUITE_KEY, tiny_data_root  # noqa: F401  (fixture)

from .test_api_contract import world  # noqa: F401  (fixture)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

GENERATOR = Path(sys.executable).with_name("openapi-python-client")
PACKAGE = "vadi_leaderboard_client"


@pytest.fixture
def client_package(live_server, tmp_path):
    """The client generated from the live server's schema, imported; removed from ``sys.modules`` after."""
    with urlopen(f"{live_server.url}/api/v1/schema/?format=json") as answer:
        (tmp_path / "schema.json").write_bytes(answer.read())
    settings = {"package_name_override": PACKAGE, "project_name_override": "vadi-leaderboard-client", "post_hooks": []}
    (tmp_path / "generator.json").write_text(json.dumps(settings))
    command = [
        str(GENERATOR), "generate", "--path", "schema.json", "--config", "generator.json", "--meta", "none",
        "--output-path", PACKAGE, "--fail-on-warning",
    ]  # fmt: skip
    result = subprocess.run(
        command,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    sys.path.insert(0, str(tmp_path))
    try:
        yield lambda name: importlib.import_module(f"{PACKAGE}.{name}")
    finally:
        sys.path.remove(str(tmp_path))
        for name in [n for n in sys.modules if n == PACKAGE or n.startswith(f"{PACKAGE}.")]:
            del sys.modules[name]


def test_generated_client_lists_the_leaderboard_uploads_and_reads_the_status(world, live_server, client_package):
    client_module = client_package("client")
    models = client_package("models")
    types = client_package("types")
    leaderboard_retrieve = client_package("api.leaderboard.leaderboard_retrieve")
    submissions_create = client_package("api.submissions.submissions_create")
    submissions_retrieve = client_package("api.submissions.submissions_retrieve")

    with client_module.Client(base_url=live_server.url, raise_on_unexpected_status=True) as anonymous:
        board = leaderboard_retrieve.sync(client=anonymous, suite=SUITE_KEY)
    assert isinstance(board, models.Leaderboard), board
    assert board.suite.key == SUITE_KEY and board.n_categories == 2
    ranked = {row.method.key: row for row in board.ranked}
    assert set(ranked) == {"random", "contract-net"}
    assert ranked["random"].provenances == ["reproduced"] and ranked["contract-net"].provenances == ["server_scored"]
    assert 0.0 <= ranked["random"].metrics["pl"].mean <= 1.0

    bundle = Path(world["env"]["VADI_CONTRACT_BUNDLE"]).read_bytes()
    archive = types.File(payload=io.BytesIO(bundle), file_name="bundle.zip", mime_type="application/zip")
    body = models.SubmissionUploadRequest(method="Contract net", suite=SUITE_KEY, archive=archive)
    token = world["tokens"]["user"]
    with client_module.AuthenticatedClient(
        base_url=live_server.url, token=token, prefix="Token", raise_on_unexpected_status=True
    ) as alice:
        created = submissions_create.sync(client=alice, body=body)
        assert isinstance(created, models.SubmissionCreated), created
        assert created.method == "contract-net" and created.owner == "alice"
        assert created.api_url.endswith(f"/api/v1/submissions/{created.id}/")

        status = submissions_retrieve.sync(client=alice, id=created.id)
        assert isinstance(status, models.SubmissionDetailOutput), status  # with its per-category results
        assert status.id == created.id and status.status == models.JobStatusEnum.DONE and status.progress == 1.0

        # Errors come back as the schema's Error model, typed like the rest.
        missing = submissions_retrieve.sync(client=alice, id=created.id + 1000)
        assert isinstance(missing, models.Error) and missing.error.code == "not_found"
    with client_module.AuthenticatedClient(base_url=live_server.url, token="not-a-token", prefix="Token") as stranger:
        refused = submissions_create.sync(client=stranger, body=body)
    assert isinstance(refused, models.Error) and refused.error.code == "authentication_failed"
