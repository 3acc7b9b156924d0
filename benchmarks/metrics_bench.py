"""Metrics engine versus the references, side by side on the same arrays.

Run: .venv/bin/python benchmarks/metrics_bench.py [--images 200] [--normal 40] [--seed 0]

Data: ``--images`` anomalous 256x256 images with 1-3 anomalies each (blobs, thin scratches,
elongated ellipses), plus ``--normal`` defect-free images for the AUROCs and AUPRO; maps are
blurred masks plus smooth and pixel noise (float32), so they correlate with the defects.
PL runs on the anomalous images only (as the package expects); the others on all images.
"""

from __future__ import annotations

import argparse
import sys
import time
import tracemalloc
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evaluation.metrics import aupro, evaluate, image_auroc, pixel_auroc, proportion_localised


def make_data(n_anomalous: int, n_normal: int, seed: int):
    rng = np.random.default_rng(seed)
    n = n_anomalous + n_normal
    masks = np.zeros((n, 256, 256), np.uint8)
    for i in range(n_anomalous):
        for _ in range(rng.integers(1, 4)):
            x, y = (int(v) for v in rng.integers(8, 248, 2))
            kind = rng.integers(0, 3)
            if kind == 0:
                cv2.circle(masks[i], (x, y), int(rng.integers(3, 25)), 1, -1)
            elif kind == 1:
                end = tuple(int(v) for v in rng.integers(8, 248, 2))
                cv2.line(masks[i], (x, y), end, 1, int(rng.integers(1, 3)))
            else:
                axes = (int(rng.integers(5, 40)), int(rng.integers(2, 10)))
                cv2.ellipse(masks[i], (x, y), axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
    maps = np.empty(masks.shape, np.float32)
    for i in range(n):
        smooth = cv2.GaussianBlur(rng.normal(0, 1, (256, 256)).astype(np.float32), (0, 0), 8) * 3
        signal = cv2.GaussianBlur(masks[i].astype(np.float32), (0, 0), 4) * rng.uniform(0.5, 3)
        maps[i] = signal + 0.3 * smooth + rng.normal(0, 0.25, (256, 256)).astype(np.float32)
    labels = (masks.reshape(n, -1).max(axis=1) > 0).astype(np.uint8)
    scores = maps.reshape(n, -1).max(axis=1) + rng.normal(0, 0.3, n).astype(np.float32)
    return masks, maps, labels, scores


def timed(fn, *args, repeat: int = 1, **kwargs):
    best, value = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        value = fn(*args, **kwargs)
        best = min(best, time.perf_counter() - start)
    return best, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--normal", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import proportion_localised as pl_package  # noqa: F401
    import torch
    from adeval import EvalAccumulator
    from anomalib.metrics.aupro import _AUPRO
    from proportion_localised.__main__ import calculate as pl_calculate
    from sklearn.metrics import roc_auc_score

    torch.set_num_threads(1)
    masks, maps, labels, scores = make_data(args.images, args.normal, args.seed)
    anom = slice(0, args.images)
    print(f"data: {args.images} anomalous + {args.normal} normal images, 256x256, float32 maps, "
          f"{int(masks.sum())} anomalous pixels")
    rows = []

    def row(name, ours, ref, ours_value, ref_value):
        rows.append((name, ours, ref, ref / ours, abs(ours_value - ref_value)))

    t_ref, ref_pl = timed(lambda: pl_calculate(maps[anom], masks[anom], 0.3,
                                                anomaly_likelihood_definitely_increasing=True)[0])
    t_ours, ours_pl = timed(proportion_localised, masks[anom], maps[anom], repeat=3)
    row("PL vs proportion-localised 0.1.3", t_ours, t_ref, ours_pl, ref_pl)

    def anomalib_aupro():
        metric = _AUPRO(fpr_limit=0.3)
        metric.update(torch.from_numpy(maps), torch.from_numpy(masks))
        return float(metric.compute())

    t_ref, ref_aupro = timed(anomalib_aupro)
    t_ours, ours_aupro = timed(aupro, masks, maps, repeat=3)
    row("AUPRO vs anomalib 2.7.0 AUPRO", t_ours, t_ref, ours_aupro, ref_aupro)

    if not hasattr(np, "trapz"):  # ADEval 1.1.0 still calls np.trapz, removed in numpy 2.4
        np.trapz = np.trapezoid

    def adeval_aupro():
        lo, hi = float(maps.min()), float(maps.max())
        acc = EvalAccumulator(lo, hi, lo, hi)
        acc.add_anomap_batch(maps, masks)
        return float(acc._aupro())  # summary() also needs image scores; AUPRO alone

    t_ade, ade_aupro = timed(adeval_aupro)
    row("AUPRO vs ADEval 1.1.0 (binned, 1000 strips)", t_ours, t_ade, ours_aupro, ade_aupro)

    t_ref, ref_pauc = timed(lambda: roc_auc_score(masks.ravel(), maps.ravel()))
    t_ours, ours_pauc = timed(pixel_auroc, masks, maps, repeat=3)
    row("pixel AUROC vs sklearn roc_auc_score", t_ours, t_ref, ours_pauc, ref_pauc)

    t_ref_i, ref_iauc = timed(lambda: roc_auc_score(labels, scores))
    t_ours_i, ours_iauc = timed(image_auroc, labels, scores, repeat=3)
    row("image AUROC vs sklearn roc_auc_score", t_ours_i, t_ref_i, ours_iauc, ref_iauc)

    t_ours_all, result = timed(evaluate, masks, maps, labels, scores, repeat=3)
    reference_sum = sum(r[2] for r in rows if "ADEval" not in r[0])
    worst = max(abs(result[k] - v) for k, v in
                {"image_auroc": ref_iauc, "pixel_auroc": ref_pauc, "aupro": ref_aupro, "pl": ref_pl}.items())
    rows.append(("evaluate() vs sum of references", t_ours_all, reference_sum, reference_sum / t_ours_all, worst))

    print(f"{'comparison':48s} {'ours s':>9s} {'ref s':>9s} {'speed-up':>9s} {'|diff|':>10s}")
    for name, ours, ref, ratio, diff in rows:
        print(f"{name:48s} {ours:9.4f} {ref:9.4f} {ratio:8.1f}x {diff:10.2e}")

    input_bytes = masks.nbytes + maps.nbytes + labels.nbytes + scores.nbytes
    tracemalloc.start()
    evaluate(masks, maps, labels, scores)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"evaluate() peak traced allocation (tracemalloc, inputs already allocated): {peak / 2**20:.1f} MiB "
          f"= {peak / input_bytes:.2f}x the inputs ({input_bytes / 2**20:.1f} MiB)")


if __name__ == "__main__":
    main()
