"""Scoring throughput: one VADI-size bundle through the real scoring service, beside the bare metrics.

What a scoring worker does for one upload, measured on this machine:

* ground truth on disk with the test sets of VADI: the 15 MVTec AD and 12 VisA categories with
  their real test counts (1,725 + 2,162 = 3,887 images, 2,458 of them anomalous) at their real
  resolutions (700-1,024 px MVTec, ~1,500 x 1,000 VisA), PNG masks of 1-3 defects each. The image
  pixels are flat grey (scoring never decodes them; only their headers are read), which keeps
  the data set small on disk;
* a bundle as a participant uploads it: maps 256 x 256 float16 (blurred masks plus noise),
  float32 scores, ~0.5 GB uncompressed;
* ``submission_create`` (the upload, stored) then ``submission_score`` (what the Celery task
  runs: validation, ground truth, the four metrics per category, the result rows), in a fresh
  process against a SQLite database; wall time, process CPU time, peak RSS;
* side by side, the reference floor on the same arrays: reading the 27 ground truths alone, and
  ``evaluate_at_protocol`` alone (the metrics with no I/O); ratios to the service.

    .venv/bin/python benchmarks/scoring_throughput.py [--work /tmp/vadi-scoring-bench] [--repeat 2]

Bundles per hour per CPU worker process = 3600 / seconds per bundle (one process per core).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

#: MVTec AD test sets: category -> (good, defective, image side in px).
MVTEC = {
    "bottle": (20, 63, 900), "cable": (58, 92, 1024), "capsule": (23, 109, 1000), "carpet": (28, 89, 1024),
    "grid": (21, 57, 1024), "hazelnut": (40, 70, 1024), "leather": (32, 92, 1024), "metal_nut": (22, 93, 700),
    "pill": (26, 141, 800), "screw": (41, 119, 1024), "tile": (33, 84, 840), "toothbrush": (12, 30, 1024),
    "transistor": (60, 40, 1024), "wood": (19, 60, 1024), "zipper": (32, 119, 1024),
}  # fmt: skip
#: VisA test sets (the 1cls split): category -> (normal, anomalous, (width, height)).
VISA = {
    "candle": (100, 100, (1284, 1168)), "capsules": (60, 100, (1500, 1000)), "cashew": (50, 100, (1274, 1176)),
    "chewinggum": (50, 100, (1342, 1118)), "fryum": (50, 100, (1500, 1000)), "macaroni1": (100, 100, (1500, 1000)),
    "macaroni2": (100, 100, (1500, 1000)), "pcb1": (100, 100, (1404, 1070)), "pcb2": (100, 100, (1404, 1070)),
    "pcb3": (101, 100, (1404, 1070)), "pcb4": (101, 100, (1404, 1070)), "pipe_fryum": (50, 100, (1500, 1000)),
}  # fmt: skip
SUITE = "vadi-bench"


def _write_category(root: Path, name: str, good: int, bad: int, size: tuple[int, int], rng) -> None:
    import cv2

    width, height = size
    flat = np.full((height, width, 3), 128, np.uint8)
    for sub in ("train/good", "test/good", "test/defect", "ground_truth/defect"):
        (root / name / sub).mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(root / name / "train/good/000.png"), flat)
    for i in range(good):
        cv2.imwrite(str(root / name / f"test/good/{i:03d}.png"), flat)
    for i in range(bad):
        cv2.imwrite(str(root / name / f"test/defect/{i:03d}.png"), flat)
        mask = np.zeros((height, width), np.uint8)
        for _ in range(int(rng.integers(1, 4))):
            centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
            axes = (int(rng.integers(width // 100 + 2, width // 8)), int(rng.integers(height // 100 + 2, height // 8)))
            cv2.ellipse(mask, centre, axes, float(rng.uniform(0, 180)), 0, 360, 255, -1)
        cv2.imwrite(str(root / name / f"ground_truth/defect/{i:03d}_mask.png"), mask)


def prepare(work: Path) -> None:
    """Write the ground truth (mvtec/ and visa/ roots) and the bundle under ``work``."""
    import cv2

    from algorithms.bundle import write_bundle
    from algorithms.data import load_category

    rng = np.random.default_rng(0)
    roots = {"mvtec": work / "mvtec", "visa": work / "visa"}
    if not (work / "bundle.zip").exists():
        for name, (good, bad, side) in MVTEC.items():
            _write_category(roots["mvtec"], name, good, bad, (side, side), rng)
        for name, (good, bad, size) in VISA.items():
            _write_category(roots["visa"], name, good, bad, size, rng)
        categories = {}
        for dataset, table in (("mvtec", MVTEC), ("visa", VISA)):
            for name in table:
                gt = load_category(f"{dataset}/{name}", roots=roots).ground_truth(size=256)
                blurred = np.stack([cv2.GaussianBlur(m.astype(np.float32), (0, 0), 4) for m in gt.masks])
                maps = (0.8 * blurred + 0.5 * rng.random(blurred.shape, dtype=np.float32)).astype(np.float16)
                scores = (0.6 * gt.labels + rng.random(len(gt.ids))).astype(np.float32)
                categories[f"{dataset}/{name}"] = {"ids": list(gt.ids), "scores": scores, "maps": maps}
        write_bundle(
            work / "bundle.zip", method="Throughput bench", suite=SUITE, categories=categories, format_version=1
        )  # path ids: format 1, read for public suites
    print(json.dumps({"bundle_bytes": (work / "bundle.zip").stat().st_size}))


def _setup_django(work: Path) -> None:
    os.environ.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        VADI_VAR_DIR=str(work / "var"),
        VADI_MVTEC_ROOT=str(work / "mvtec"),
        VADI_VISA_ROOT=str(work / "visa"),
        VADI_CATALOG_ON_MIGRATE="0",
        DJANGO_LOG_LEVEL="WARNING",
    )
    for name in ("DATABASE_URL", "CELERY_BROKER_URL", "CACHE_URL"):
        os.environ.pop(name, None)
    import django

    django.setup()


def score(work: Path) -> None:
    """In this (fresh) process: catalog rows, one upload, the scoring service; print the figures."""
    _setup_django(work)
    from django.core.files import File
    from django.core.management import call_command

    (work / "var" / "db.sqlite3").unlink(missing_ok=True)
    call_command("migrate", verbosity=0, interactive=False)
    from django.conf import settings
    from django.contrib.auth import get_user_model

    from algorithms.data import load_category, opaque_id_table
    from evaluation.services.submissions import submission_score
    from leaderboard.models import Category, Dataset, JobStatus, Result, Suite
    from leaderboard.services import submissions as submissions_service
    from leaderboard.services.submissions import submission_create

    suite = Suite.objects.create(key=SUITE, name="VADI-size bench")
    rows = []
    for dataset, table in (("mvtec", MVTEC), ("visa", VISA)):
        ds, _ = Dataset.objects.get_or_create(key=dataset, defaults={"name": dataset})
        for name in table:
            key = f"{dataset}/{name}"
            ids = load_category(key).test_ids
            id_table = opaque_id_table(settings.VADI_TEST_ID_KEY, key, ids)  # as catalog_sync publishes them
            rows.append(
                Category.objects.create(key=key, dataset=ds, name=name, test_ids=list(id_table), test_files=id_table)
            )
    suite.categories.set(rows)
    owner = get_user_model().objects.create_user("bench", password="pw-123456")
    path = work / "bundle.zip"
    # Store the upload without running its task (no broker: it would run eagerly, inside the timing of
    # the upload); the scoring is then timed on its own, as a worker runs it.
    submissions_service.job_enqueue = lambda *args, **kwargs: None
    with open(path, "rb") as handle:
        upload = File(handle, name="bundle.zip")
        upload.size = path.stat().st_size
        started = time.perf_counter()
        submission = submission_create(owner=owner, method_name="Throughput bench", suite_key=SUITE, archive=upload)
        store_s = time.perf_counter() - started
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    cpu0, wall0 = time.process_time(), time.perf_counter()
    outcome = submission_score(submission_id=submission.pk, task_id="bench")
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    submission.refresh_from_db()
    assert outcome == "done" and submission.status == JobStatus.DONE, (outcome, submission.error_message)
    n_results = Result.objects.filter(submission=submission).count()
    print(json.dumps({"store_s": store_s, "score_wall_s": wall, "score_cpu_s": cpu, "results": n_results,
                      "peak_rss_mib": rss_after / 1024, "rss_before_mib": rss_before / 1024}))  # fmt: skip


def reference(work: Path) -> None:
    """The floor, in a fresh process: the 27 ground truths read alone; the metrics alone on the same arrays."""
    from algorithms.data import load_category
    from evaluation.metrics import evaluate_at_protocol

    roots = {"mvtec": work / "mvtec", "visa": work / "visa"}
    keys = [f"mvtec/{n}" for n in MVTEC] + [f"visa/{n}" for n in VISA]
    cpu0, wall0 = time.process_time(), time.perf_counter()
    truths = {key: load_category(key, roots=roots).ground_truth(size=256) for key in keys}
    gt_wall, gt_cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    metrics_wall = metrics_cpu = 0.0
    for key in keys:
        gt = truths[key]
        ids, scores, maps = _load_arrays(work / "bundle.zip", key)
        row = {image_id: i for i, image_id in enumerate(ids)}
        order = np.array([row[image_id] for image_id in gt.ids])
        cpu0, wall0 = time.process_time(), time.perf_counter()
        evaluate_at_protocol(gt.masks, maps[order].astype(np.float32), gt.labels, scores[order])
        metrics_wall += time.perf_counter() - wall0
        metrics_cpu += time.process_time() - cpu0
    print(json.dumps({"gt_wall_s": gt_wall, "gt_cpu_s": gt_cpu, "metrics_wall_s": metrics_wall,
                      "metrics_cpu_s": metrics_cpu}))  # fmt: skip


def _load_arrays(path: Path, key: str):
    import io
    import zipfile

    with zipfile.ZipFile(path) as zf:
        ids = zf.read(f"{key}/ids.txt").decode().splitlines()
        scores = np.load(io.BytesIO(zf.read(f"{key}/scores.npy")), allow_pickle=False)
        maps = np.load(io.BytesIO(zf.read(f"{key}/maps.npy")), allow_pickle=False)
    return ids, scores, maps


def _child(step: str, work: Path) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--step", step, "--work", str(work)], cwd=ROOT,
                          capture_output=True, text=True)  # fmt: skip
    if proc.returncode != 0:
        raise SystemExit(f"{step} failed:\n{proc.stdout}\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/vadi-scoring-bench"))
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--step", choices=("prepare", "score", "reference"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    if args.step:
        {"prepare": prepare, "score": score, "reference": reference}[args.step](args.work)
        return
    t0 = time.perf_counter()
    bundle = _child("prepare", args.work)
    images = sum(g + b for g, b, _ in MVTEC.values()) + sum(g + b for g, b, _ in VISA.values())
    size = bundle["bundle_bytes"] / 2**20
    print(f"prepared in {time.perf_counter() - t0:.0f} s: bundle {size:.0f} MiB, {images} test images")
    runs = [_child("score", args.work) for _ in range(args.repeat)]
    ref = _child("reference", args.work)
    best = min(runs, key=lambda r: r["score_wall_s"])
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    for i, run in enumerate(runs, 1):
        print(f"run {i}: upload stored {run['store_s']:.1f} s; scored in {run['score_wall_s']:.1f} s wall, "
              f"{run['score_cpu_s']:.1f} s CPU; {run['results']} results; peak RSS {run['peak_rss_mib']:.0f} MiB "
              f"(before scoring {run['rss_before_mib']:.0f} MiB)")  # fmt: skip
    print(f"reference: ground truth alone {ref['gt_wall_s']:.1f} s wall ({ref['gt_cpu_s']:.1f} s CPU); "
          f"metrics alone {ref['metrics_wall_s']:.1f} s wall ({ref['metrics_cpu_s']:.1f} s CPU)")  # fmt: skip
    floor_cpu = ref["gt_cpu_s"] + ref["metrics_cpu_s"]
    print(f"service / (ground truth + metrics), CPU: {best['score_cpu_s'] / floor_cpu:.2f}x")
    print(f"bundles per hour per scoring process: {3600 / best['score_cpu_s']:.0f} (CPU-bound, a core each), "
          f"{3600 / best['score_wall_s']:.0f} at this run's wall time")  # fmt: skip


if __name__ == "__main__":
    main()
