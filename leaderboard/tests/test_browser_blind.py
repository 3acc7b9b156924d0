"""Headless Chromium: the blind suite end to end (issue 15).

A signed-in user downloads every blind category's test images from the suite's page, makes a
bundle with ``write_bundle`` (the ids are the images' file names), uploads it on the submit page,
sees it scored on the Blind board, and a second upload the same day is refused with the limit's
message. Scoring runs eagerly in the live server (no broker in tests).
"""

from __future__ import annotations

import zipfile

import cv2
import numpy as np
import pytest

from algorithms.bundle import write_bundle
from leaderboard.models import JobStatus, Submission
from leaderboard.services.blind import blind_suite_generate

from . import test_browser
from .factories import UserFactory
from .test_browser import _sign_in, shot

browser = test_browser.browser  # the headless Chromium fixtures of the other browser tests
page = test_browser.page

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def blind_suite(settings, tmp_path):
    settings.DATASET_ROOTS = {**settings.DATASET_ROOTS, "blind": str(tmp_path / "blind")}
    settings.VAR_DIR = tmp_path / "var"
    settings.VADI_BLIND_SEED = 5550123
    settings.VADI_BLIND_SUBMISSIONS_PER_DAY = 1
    settings.VADI_SUBMISSIONS_PER_DAY = 100
    return blind_suite_generate(image_size=64, n_train=4, n_test_good=4, n_test_defect=6, workers=1)


def _download(page, link) -> tuple[list[str], np.ndarray]:
    with page.expect_download() as info:
        link.click()
    with zipfile.ZipFile(info.value.path()) as zf:
        names = [n for n in zf.namelist() if n.endswith(".png")]
        ids = [n.rsplit("/", 1)[1].removesuffix(".png") for n in names]
        images = np.stack(
            [cv2.imdecode(np.frombuffer(zf.read(n), np.uint8), cv2.IMREAD_GRAYSCALE).astype(np.float32) for n in names]
        )
    return ids, images


def _upload(page, live_server, path) -> None:
    page.goto(f"{live_server.url}/submit/")
    page.set_input_files("input[name=archive]", str(path))
    page.select_option("select[name=suite]", "blind")
    page.click("form.submit-form button[type=submit]")
    page.wait_for_load_state()


def test_blind_download_bundle_upload_board_and_limit(page, live_server, blind_suite, tmp_path):
    user = UserFactory(username="blinduser")
    _sign_in(page, live_server, user)
    page.goto(f"{live_server.url}/blind/")
    assert "1 scored submission per user per 24 hours" in page.locator("#blind-limit").inner_text()
    links = page.locator("a.blind-test-download")
    assert links.count() == len(blind_suite)
    categories = {}
    for i, key in enumerate(sorted(blind_suite)):
        link = links.nth(i)
        assert link.get_attribute("href") == f"/blind/{key.partition('/')[2]}/test.zip"
        ids, images = _download(page, link)
        maps = np.abs(images - np.median(images, axis=0))
        categories[key] = {"ids": ids, "scores": maps.reshape(len(ids), -1).max(axis=1), "maps": maps}
    bundle = write_bundle(tmp_path / "bundle.zip", method="Browser median", suite="blind", categories=categories)
    shot(page, "blind")

    _upload(page, live_server, bundle)
    page.wait_for_url("**/submissions/*/")
    submission = Submission.objects.get(owner=user)
    assert submission.status == JobStatus.DONE, submission.error_message
    page.goto(f"{live_server.url}/blind/")
    assert page.locator("#board tbody tr[data-method]").count() == 1
    assert "Browser median" in page.locator("#board").inner_text()
    shot(page, "blind-board")

    _upload(page, live_server, bundle)
    alert = page.locator("[role=alert]").first.inner_text()
    assert "limit 1" in alert and "probe" in alert, alert
    assert Submission.objects.filter(owner=user).count() == 1
    shot(page, "blind-limit")
    # The refusal is answered with HTTP 429, which Chromium logs; nothing else went wrong.
    assert [e for e in page.console_errors if "429" not in e] == []
