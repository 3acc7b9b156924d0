"""``python -m algorithms submit --anomalib`` against a live test server, from a real anomalib model (issue 21).

A user's local copy of the tiny two-category suite (the server's ground truth is the same test
images) is given to anomalib's ``Folder`` datamodule with the settings ``docs/anomalib.md``
recommends; anomalib's ``Engine`` trains PaDiM (resnet18, no pretrained weights: nothing is
downloaded) with normalisation off, predicts the test set, and the predictions are saved with
``torch.save`` as a user would. ``python -m algorithms submit --anomalib KEY=FILE ...`` then maps
anomalib's absolute paths to the published ids, writes, uploads, follows and prints the results,
which must equal ``evaluation.metrics`` on the very arrays anomalib produced. With ``Folder``'s
defaults (no ``normal_test_dir``) the same command refuses, naming the settings to change, and
with anomalib's default normalisation (statistics from held-out normal images) it refuses the
clamped scores, naming ``PostProcessor(enable_normalization=False)``.
"""

# The shared fixtures are imported from the neighbouring modules; pytest injects them by parameter name.
# ruff: noqa: F811

from __future__ import annotations

import filecmp
import zipfile
from pathlib import Path

import numpy as np
import pytest
from rest_framework.authtoken.models import Token

from evaluation.tests.test_submissions import (  # noqa: F401  (fixtures)
    NAMES,
    SIZES,
    SUITE_KEY,
    expected_values,
    make_catalog,
    results_of,
    tiny_data_root,
    user,
)
from evaluation.tests.test_submit_cli import _cli, server  # noqa: F401  (the live-server fixture)
from leaderboard.models import JobStatus, Submission

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture(scope="module")
def local_copy(tmp_path_factory, tiny_data_root) -> Path:
    """The user's copy of the suite: the server's test images, and 8 training images per category (PaDiM needs 2+)."""
    from algorithms.data import generate_suite

    root = tmp_path_factory.mktemp("user-data")
    generate_suite(root, seed=0, categories=list(NAMES), workers=1, **{**SIZES, "n_train": 8})
    for name in NAMES:  # the premise: the test images are the server's, byte for byte
        tests = sorted(p.relative_to(tiny_data_root) for p in (tiny_data_root / name / "test").rglob("*.png"))
        assert tests and all(filecmp.cmp(tiny_data_root / rel, root / rel, shallow=False) for rel in tests)
    return root


RECOMMENDED = {"normal_test_dir": "test/good", "val_split_mode": "same_as_test"}  # docs/anomalib.md


def _anomalib_predictions(category_root: Path, work: Path, *, folder: dict, normalise: bool = False):
    """anomalib's ``Engine.predict`` output for one category: PaDiM trained on ``train/good``.

    ``folder``: the ``Folder`` datamodule's split settings; ``normalise``: anomalib's default
    post-processing (min-max normalisation into [0, 1], clamped) instead of raw scores.
    """
    import torch
    from anomalib.data import Folder
    from anomalib.engine import Engine
    from anomalib.models import Padim
    from anomalib.post_processing import PostProcessor

    torch.manual_seed(0)  # PaDiM's random feature selection; Folder's splits take seed=0
    defects = sorted(p.name for p in (category_root / "test").iterdir() if p.is_dir() and p.name != "good")
    datamodule = Folder(name=category_root.name, root=category_root, normal_dir="train/good",
                        abnormal_dir=[f"test/{d}" for d in defects], num_workers=0, train_batch_size=8,
                        eval_batch_size=4, seed=0, **folder)  # fmt: skip
    model = Padim(
        backbone="resnet18", pre_trained=False, layers=["layer1", "layer2"], n_features=50,
        pre_processor=Padim.configure_pre_processor(image_size=(64, 64)),  # the whole image, no crop
        post_processor=PostProcessor(enable_normalization=normalise),
        evaluator=False, visualizer=False,
    )  # fmt: skip
    engine = Engine(max_epochs=1, accelerator="cpu", devices=1, default_root_dir=work, logger=False,
                    enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    engine.fit(model, datamodule=datamodule)
    return engine.predict(model, dataloaders=datamodule.test_dataloader())


def _saved(local_copy: Path, out: Path, *, folder: dict = RECOMMENDED, normalise: bool = False) -> dict[str, Path]:
    """``{category key: .pt file}``: each category's predictions saved with ``torch.save``."""
    import torch

    files = {}
    out.mkdir(parents=True, exist_ok=True)
    for name in NAMES:
        predictions = _anomalib_predictions(local_copy / name, out / "anomalib" / name, folder=folder,
                                            normalise=normalise)  # fmt: skip
        files[f"synthetic/{name}"] = out / f"{name}.pt"
        torch.save(predictions, files[f"synthetic/{name}"])
    return files


def _as_categories(files: dict[str, Path], local_copy: Path) -> dict:
    """The arrays anomalib produced, by the test images' file names (``test/good/000.png``)."""
    import torch

    out = {}
    for key, file in files.items():
        batches = torch.load(file, weights_only=False)
        root = local_copy / key.split("/")[1]
        out[key] = {
            "ids": [Path(p).relative_to(root).as_posix() for b in batches for p in b.image_path],
            "scores": np.concatenate([b.pred_score.reshape(-1).numpy() for b in batches]),
            "maps": np.concatenate([b.anomaly_map.reshape(-1, *b.anomaly_map.shape[-2:]).numpy() for b in batches]),
        }
    return out


def test_submit_from_anomalib_predictions_prints_the_results(server, local_copy, tiny_data_root, tmp_path):
    token = Token.objects.create(user=user("anomalib")).key
    files = _saved(local_copy, tmp_path)
    bundle = tmp_path / "kept.zip"
    options = [arg for key, file in files.items() for arg in ("--anomalib", f"{key}={file}")]
    submitted = _cli("submit", *options, "--method", "anomalib PaDiM", "--suite", SUITE_KEY, "--server", server,
                     "--out", str(bundle), token=token, home=tmp_path)  # fmt: skip
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    assert f"bundle {bundle}: 2 categories, 16 images" in submitted.stderr
    assert not [line for line in submitted.stderr.splitlines() if line.startswith("warning: ")]  # no ties, no resize

    submission = Submission.objects.get()
    assert submission.status == JobStatus.DONE, submission.error_message
    out = submitted.stdout
    assert f"submission {submission.pk} (anomalib-padim, suite {SUITE_KEY}): done" in out
    results = results_of(submission)
    for key, metrics in results.items():
        line = next(line for line in out.splitlines() if line.startswith(key))
        assert all(f"{value:.4f}" in line for value in metrics.values()), (line, metrics)
    # the server's numbers are our metric functions on the very arrays anomalib returned
    categories = _as_categories(files, local_copy)
    assert results == expected_values(tiny_data_root, categories)
    # the kept bundle holds them under the published ids, at anomalib's resolution, uncropped
    from algorithms.client import published_test_ids

    with zipfile.ZipFile(bundle) as zf:
        for key, entry in categories.items():
            ids = zf.read(f"{key}/ids.txt").decode().split()
            assert sorted(ids) == published_test_ids(server, key) and len(ids) == len(entry["ids"])
            with zf.open(f"{key}/maps.npy") as fp:
                np.testing.assert_array_equal(np.lib.format.read_array(fp), entry["maps"])


def test_folder_defaults_and_normalised_scores_are_refused_naming_the_fix(server, local_copy, tmp_path):
    token = Token.objects.create(user=user("anomalib")).key
    common = ["--method", "anomalib PaDiM", "--suite", SUITE_KEY, "--server", server]

    def options(files):
        return [arg for key, file in files.items() for arg in ("--anomalib", f"{key}={file}")]

    # Folder's defaults: no normal_test_dir (training images sampled as normal test images), half the test set
    # moved to validation
    defaults = options(_saved(local_copy, tmp_path / "defaults", folder={}))
    refused = _cli("submit", *defaults, *common, token=token, home=tmp_path)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "normal_test_dir='test/good'" in refused.stderr and "val_split_mode='same_as_test'" in refused.stderr

    # anomalib's default normalisation, its statistics from held-out normal images: scores clamped at 1.0 or 0.0
    folder = {"normal_test_dir": "test/good", "val_split_mode": "from_train"}
    clamped = options(_saved(local_copy, tmp_path / "normalised", folder=folder, normalise=True))
    refused = _cli("submit", *clamped, *common, token=token, home=tmp_path)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "clamped scores, tied in the ranking" in refused.stderr
    assert "PostProcessor(enable_normalization=False)" in refused.stderr
    assert not Submission.objects.exists()  # refused before anything was uploaded
    # `bundle --anomalib --allow-ties` writes them anyway (the bundle only), with a warning
    accepted = _cli("bundle", *clamped, *common, "--out", str(tmp_path / "b.zip"), "--allow-ties", token=None,
                    home=tmp_path)  # fmt: skip
    assert accepted.returncode == 0, accepted.stderr
    assert "warning: synthetic/" in accepted.stderr and "clamped scores" in accepted.stderr
    assert (tmp_path / "b.zip").is_file()
