"""The blind suite and opaque test ids (issue 15).

* Published ids reveal no label: the id-prefix attack (score each image by whether its id starts
  with ``test/good/``) gives image AUROC 1.0 on the old path ids and 0.5 on the published ids, and
  the published order is label-blind too.
* A blind-suite bundle made from the downloaded images (named by their ids) with ``write_bundle``
  is scored; a second one the same day is refused with the limit's message; a format-1 bundle is
  refused for the blind suite.
* Every URL route of the site and the API, anonymous and signed in, is walked: no answer holds a
  test-image file name, a defect type, a mask or the seed of the blind suite, and its opaque ids
  appear only where they are published (``test-ids``) and as the downloaded images' names.
"""

from __future__ import annotations

import io
import re
import zipfile

import cv2
import numpy as np
import pytest
from django.core.exceptions import ValidationError
from django.core.files import File
from django.test import Client

from algorithms.bundle import write_bundle
from algorithms.data import BLIND_CATEGORIES, generate_suite, load_category
from evaluation.metrics import image_auroc
from leaderboard.models import Category, JobStatus, Provenance, Result, Submission, Suite, Visibility
from leaderboard.services import catalog_sync
from leaderboard.services.blind import blind_suite_generate
from leaderboard.services.submissions import QuotaExceeded, submission_create

from .conftest import publish_run, uniform
from .factories import MethodFactory, UserFactory
from .test_visibility_matrix import ALLAUTH_PAGES, url_patterns

pytestmark = pytest.mark.django_db

SEED = 918273645
SIZES = {"image_size": 64, "n_train": 4, "n_test_good": 4, "n_test_defect": 6}


@pytest.fixture
def blind(settings, tmp_path):
    """The blind suite generated (tiny) under a temporary root, with its catalog rows."""
    settings.DATASET_ROOTS = {**settings.DATASET_ROOTS, "blind": str(tmp_path / "blind")}
    settings.VAR_DIR = tmp_path / "var"
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.VADI_BLIND_SEED = SEED
    settings.VADI_BLIND_SUBMISSIONS_PER_DAY = 1
    settings.VADI_SUBMISSIONS_PER_DAY = 100
    settings.VADI_SUBMISSIONS_CONCURRENT = 100
    keys = blind_suite_generate(workers=1, **SIZES)
    return Suite.objects.get(key="blind"), keys


def _labels(category: Category, ids: list[str]) -> np.ndarray:
    return np.array([0 if category.test_files[i].startswith("test/good/") else 1 for i in ids], dtype=np.uint8)


def _prefix_attack(ids: list[str]) -> np.ndarray:
    """The attack of issue 15: an image whose id does not start with ``test/good/`` is anomalous."""
    return np.array([0.0 if i.startswith("test/good/") else 1.0 for i in ids])


def test_published_ids_reveal_no_label(blind, settings, tmp_path):
    settings.DATASET_ROOTS = {**settings.DATASET_ROOTS, "synthetic": str(tmp_path / "synthetic")}
    generate_suite(tmp_path / "synthetic", categories=["woven", "pcb"], workers=1, seed=3, **SIZES)
    catalog_sync(suites=["synthetic"])
    client = Client()
    keys = [*blind[1], "synthetic/woven", "synthetic/pcb"]
    pooled_labels, pooled_ranks = [], []
    for key in keys:
        category = Category.objects.get(key=key)
        ids = client.get(f"/api/v1/categories/{key}/test-ids").json()["test_ids"]
        labels = _labels(category, ids)
        assert 0 < labels.sum() < len(labels)
        paths = [category.test_files[i] for i in ids]
        assert image_auroc(labels, _prefix_attack(paths)) == 1.0  # path ids gave the labels away
        assert image_auroc(labels, _prefix_attack(ids)) == 0.5  # opaque ids do not
        assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids) and ids == sorted(ids)
        pooled_labels += labels.tolist()
        pooled_ranks += list(np.arange(len(ids)) / len(ids))  # the published order as a score
    order_auroc = image_auroc(np.array(pooled_labels), np.array(pooled_ranks))
    assert abs(order_auroc - 0.5) < 0.2, order_auroc
    # The id -> file-name table: published for public suites, not for the blind one.
    assert client.get("/api/v1/categories/synthetic/woven/test-files").status_code == 200
    for key in blind[1]:
        answer = client.get(f"/api/v1/categories/{key}/test-files")
        assert answer.status_code == 404 and "test/" not in answer.content.decode()


def _download_test_images(client: Client, key: str) -> tuple[list[str], np.ndarray]:
    name = key.partition("/")[2]
    answer = client.get(f"/blind/{name}/test.zip")
    assert answer.status_code == 200 and answer["Content-Type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(b"".join(answer.streaming_content))) as zf:
        names = zf.namelist()
        assert names == sorted(names) and all(re.fullmatch(rf"{name}/test/[0-9a-f]{{32}}\.png", n) for n in names)
        ids = [n.rsplit("/", 1)[1].removesuffix(".png") for n in names]
        images = np.stack(
            [cv2.imdecode(np.frombuffer(zf.read(n), np.uint8), cv2.IMREAD_GRAYSCALE).astype(np.float32) for n in names]
        )
    return ids, images


def _blind_bundle(client: Client, keys: list[str], path) -> None:
    """A naive method on the downloaded images: distance to the test images' median."""
    categories = {}
    for key in keys:
        ids, images = _download_test_images(client, key)
        maps = np.abs(images - np.median(images, axis=0))
        categories[key] = {"ids": ids, "scores": maps.reshape(len(ids), -1).max(axis=1), "maps": maps}
    write_bundle(path, method="Median distance", suite="blind", categories=categories)


def _upload(owner, path, suite_key="blind"):
    with open(path, "rb") as handle:
        upload = File(handle, name="bundle.zip")
        upload.size = path.stat().st_size
        return submission_create(
            owner=owner, method_name=None, suite_key=suite_key, archive=upload, visibility=Visibility.PUBLIC
        )


def test_blind_bundle_is_scored_and_the_second_upload_is_refused(blind, tmp_path, django_capture_on_commit_callbacks):
    _suite, keys = blind
    client = Client()
    page = client.get("/blind/").content.decode()
    assert "1 scored submission per user per 24 hours" in page and "probe" in page
    path = tmp_path / "bundle.zip"
    _blind_bundle(client, keys, path)
    owner = UserFactory()
    with django_capture_on_commit_callbacks(execute=True):
        submission = _upload(owner, path)
    submission.refresh_from_db()
    assert submission.status == JobStatus.DONE, submission.error_message
    results = Result.objects.filter(submission=submission, provenance=Provenance.SERVER_SCORED)
    assert {r.category.key for r in results} == set(keys) and results.count() == 4 * len(keys)
    assert min(r.value for r in results) >= 0.0 and max(r.value for r in results) <= 1.0
    board = client.get("/blind/").content.decode()
    assert "Median distance" in board
    with pytest.raises(QuotaExceeded, match=r"limit 1\).*probe"):
        _upload(owner, path)
    # The API says the same, with 429.
    from rest_framework.authtoken.models import Token

    token = Token.objects.create(user=owner)
    with open(path, "rb") as handle:
        answer = Client().post(
            "/api/v1/submissions/",
            {"suite": "blind", "visibility": "public", "archive": handle},
            HTTP_AUTHORIZATION=f"Token {token.key}",
        )
    assert answer.status_code == 429 and "probe" in answer.json()["error"]["message"], answer.content
    assert Submission.objects.filter(owner=owner).count() == 1


def test_format_1_bundle_is_refused_for_the_blind_suite(blind, settings, tmp_path):
    _suite, keys = blind
    path = tmp_path / "v1.zip"
    categories = {}
    for key in keys:
        truth = load_category(key, roots=settings.DATASET_ROOTS).ground_truth(size=64)  # even with the right file paths
        n = len(truth.ids)
        categories[key] = {"ids": list(truth.ids), "scores": np.zeros(n), "maps": np.zeros((n, 64, 64))}
    write_bundle(path, method="Paths", suite="blind", categories=categories, format_version=1, dtype="float32")
    with pytest.raises(ValidationError, match="format_version 1"):
        _upload(UserFactory(), path)


# Walking every route ---------------------------------------------------------------------------

STATIC_DOCS = ("api/v1/schema/", "api/v1/docs/", "api/v1/redoc/")

PARAMS = {
    "suite": ["blind"],
    "metric": ["pl", "image_auroc"],
    "name": list(BLIND_CATEGORIES),
    "split": ["train", "test"],
}


def _route_urls(route: str, values: dict[str, list[str]]) -> list[str]:
    """Every URL of ``route`` with each parameter set to each of its values (one at a time)."""
    if route.startswith("^"):
        return ["/api/v1/no-such-endpoint/"]
    if route in ALLAUTH_PAGES:  # django-allauth's pages (regular-expression routes among them)
        return [ALLAUTH_PAGES[route]]
    names = re.findall(r"<(?:\w+:)?(\w+)>", route)
    urls = ["/" + route]
    for param in names:
        options = values.get(f"{route}:{param}") or values.get(param)
        assert options, f"the blind walk has no value for <{param}> of route {route!r}: add one"
        pattern = re.compile(rf"<(?:\w+:)?{param}>")
        urls = [pattern.sub(option, url, count=1) for url in urls for option in options]
    return urls


def _variants(url: str) -> list[str]:
    sep = "&" if "?" in url else "?"
    return [url, f"{url}{sep}format=csv", f"{url}{sep}format=json", f"{url}{sep}suite=blind", f"{url}{sep}limit=1000"]


def test_no_route_returns_ground_truth_of_the_blind_suite(blind, tmp_path, django_capture_on_commit_callbacks):
    _suite, keys = blind
    client = Client()
    path = tmp_path / "bundle.zip"
    _blind_bundle(client, keys, path)
    owner = UserFactory(username="blind-owner")
    with django_capture_on_commit_callbacks(execute=True):
        submission = _upload(owner, path)
    submission.refresh_from_db()
    assert submission.status == JobStatus.DONE
    categories = list(Category.objects.filter(key__in=keys).order_by("key"))
    method = MethodFactory(key="reproduced-one", name="Reproduced one", algorithm_key="patchcore")
    run = publish_run(method, categories, uniform(0.9, len(categories)))
    pl_results = list(Result.objects.filter(category__in=categories, metric="pl"))
    # A PL explanation of a blind result, as if one had been recorded (the services never record one
    # for a blind category): per-anomaly rows, defect types and image ids must still never be shown.
    from leaderboard.services.localisation import localisation_record

    reproduced_pl = next(r for r in pl_results if r.benchmark_run_id == run.pk)
    secret_id = next(iter(Category.objects.get(pk=reproduced_pl.category_id).test_files))
    anomaly = {"image_id": secret_id, "image_index": 0, "defect_type": "zqsecretdefect", "center_x": 10.0,
               "center_y": 10.0, "width": 5.0, "height": 5.0, "angle": 0.0, "iou": 0.5, "best_iou": 0.5,
               "localised": True, "ious": [0.5]}  # fmt: skip
    localisation_record(
        result=reproduced_pl,
        document={"thresholds": [0.5], "threshold_index": 0, "iou_limit": 0.3, "anomalies": [anomaly]},
    )

    # What must never be served: file names of the test images (hence labels and defect types),
    # mask paths, and the seed; the opaque ids only on the routes that publish them.
    markers = {"ground_truth/", "_mask", str(SEED), "zqsecretdefect"}
    ids: set[str] = set()
    for category in categories:
        ids.update(category.test_files)
        for file_name in category.test_files.values():
            markers.add(file_name)
            markers.add(file_name.rsplit("/", 1)[0] + "/")  # test/<defect type>/
    markers.discard("test/good/")  # the API docs' example (MVTec AD's bottle) holds a test/good/ path
    values = {
        **PARAMS,
        "pk": [str(submission.pk), str(run.pk)],
        "run_id": [str(run.pk)],
        "method": [method.key, submission.method.key],
        "datasets/<slug:key>": ["blind"],
        "categories/<path:key>": keys,
        "methods/<slug:key>": [method.key, submission.method.key],
        "api/v1/datasets/<slug:key>": ["blind"],
        "api/v1/suites/<slug:key>": ["blind"],
        "api/v1/methods/<slug:key>": [method.key, submission.method.key],
        "api/v1/categories/<path:key>": keys,
        "results/<int:pk>": [str(r.pk) for r in pl_results],
        "accounts/me/methods/<slug:key>": [method.key, submission.method.key],
        "index": ["0", "1"],
    }
    publishing_ids = {"api/v1/categories/<path:key>/test-ids", "blind/<slug:name>/<slug:split>.zip"}
    clients = {"anonymous": Client(), "owner": Client(), "other": Client()}
    clients["owner"].force_login(owner)
    clients["other"].force_login(UserFactory(username="blind-other"))
    walked: list[tuple[str, int]] = []
    for route, _pattern in url_patterns():
        if route.startswith("admin/"):
            continue  # staff only
        route_values = {**values, **_prefixed(values, route)}  # "<route prefix><param>" keys win
        for url in _route_urls(route, route_values):
            for variant in _variants(url):
                for role, role_client in clients.items():
                    answer = role_client.get(variant)
                    body = _body(answer)
                    lowered = body.lower()
                    # The API schema and docs are generated from code; their examples (MVTec AD's file
                    # names such as test/good/000.png) are not the blind suite's: only the seed is checked.
                    checked = {str(SEED)} if route.startswith(STATIC_DOCS) else markers
                    leaked = [m for m in checked if m.lower() in lowered]
                    assert not leaked, f"{role} GET {variant} ({answer.status_code}) shows {leaked[:3]}"
                    if route not in publishing_ids:
                        shown = [i for i in ids if i in lowered]
                        assert not shown, f"{role} GET {variant} shows opaque ids {shown[:2]}"
                    walked.append((variant, answer.status_code))
    ok = {url for url, status in walked if status == 200}
    assert "/blind/" in ok and "/api/v1/leaderboard/blind/" in ok and f"/categories/{keys[0]}/" in ok
    assert f"/submissions/{submission.pk}/" in ok and "/blind/woven/test.zip" in ok


def _prefixed(values: dict[str, list[str]], route: str) -> dict[str, list[str]]:
    """Values keyed ``"<route prefix>:<param>"`` that apply to ``route``, keyed by the parameter alone."""
    out = {}
    for key, options in values.items():
        if "<" not in key:
            continue
        prefix, _, param_part = key.partition("<")
        param = param_part.rstrip(">").split(":")[-1]
        if route.startswith(prefix + "<") and re.match(rf"{re.escape(prefix)}<(?:\w+:)?{param}>", route):
            out[param] = options
    return out


def _body(answer) -> str:
    if getattr(answer, "streaming", False):
        content = b"".join(answer.streaming_content)
    else:
        content = answer.content
    if content[:4] == b"PK\x03\x04":  # a download: its member names are what could leak
        with zipfile.ZipFile(io.BytesIO(content)) as zf:
            return "\n".join(zf.namelist())
    return content.decode("utf-8", "replace")


def test_route_walk_fails_on_a_leak(blind):
    """The walk's check can fail: a page showing a blind test image's file name is caught."""
    category = Category.objects.get(key=blind[1][0])
    file_name = next(iter(category.test_files.values()))
    assert file_name.lower() in _body(type("A", (), {"content": f"<td>{file_name}</td>".encode()})()).lower()


def test_production_never_uses_the_development_id_key_or_seed():
    """DJANGO_DEBUG off without VADI_TEST_ID_KEY / VADI_BLIND_SEED: both derived from the secret key."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import django, os; os.environ['DJANGO_SETTINGS_MODULE']='config.settings'; django.setup(); "
        "from django.conf import settings as s; print(s.VADI_TEST_ID_KEY); print(s.VADI_BLIND_SEED)"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("VADI_TEST_ID_KEY", "VADI_BLIND_SEED")}
    env.update(DJANGO_DEBUG="0", DJANGO_SECRET_KEY="p" * 10 + "a-long-random-production-secret-key-0987654321")
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    key, seed = proc.stdout.split()
    assert key != "insecure-dev-test-id-key" and len(key) == 64 and int(seed) != 1_000_003
