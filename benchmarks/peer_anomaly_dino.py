"""Our AnomalyDINO against anomalib 2.7's on the same images and the same DINOv2 ViT-S/14 weights.

Usage::

    .venv/bin/python benchmarks/peer_anomaly_dino.py [--input-size 224] [--n-train 16] [--n-test 8]
        [--batch 8] [--repeats 5] [--threads 1]

Both sides get the same ImageNet-normalised tensors (smooth random images, seeded) and the same
random-initialised ``vit_small_patch14_dinov2`` (full size: 12 blocks, width 384; anomalib hard-codes
``pretrained=True``, so its timm download is switched off and its weights are copied into ours,
the positional embedding resampled to our grid exactly as anomalib resamples it at every call).
"Train step" = embedding one batch of training images into the memory bank (both are
training-free); "inference" = scoring one test image (batch of ``--batch``), per image. Each time
is the fastest of ``--repeats`` passes (timeit's rule: on a shared machine the slower passes
measure other processes), the two sides alternating. The outputs are compared: image scores and
the patch-level maps must agree within 1e-4 (anomalib upsamples nearest-neighbour where the
official code is bilinear; the check uses anomalib's rule on our distances).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _images(n: int, size: int, seed: int):
    import torch
    import torch.nn.functional as F

    generator = torch.Generator().manual_seed(seed)
    coarse = torch.randn(n, 3, size // 16, size // 16, generator=generator)
    return F.interpolate(coarse, size=size, mode="bilinear", align_corners=False) + 0.1 * torch.randn(
        n, 3, size, size, generator=generator
    )


def _best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input-size", type=int, default=224)
    parser.add_argument("--n-train", type=int, default=16)
    parser.add_argument("--n-test", type=int, default=8)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import numpy as np
    import timm
    import torch
    import torch.nn.functional as F
    from timm.layers import resample_abs_pos_embed

    from algorithms.components.blur import gaussian_blur
    from algorithms.registry import create_algorithm

    torch.set_num_threads(args.threads)
    from anomalib.models.image.anomaly_dino.torch_model import AnomalyDINOModel

    create = timm.create_model
    timm.create_model = lambda name, pretrained=False, **kw: create(name, pretrained=False, **kw)
    torch.manual_seed(0)
    theirs = AnomalyDINOModel(num_neighbours=1, encoder_name="vit_small_patch14_dinov2", masking=False)
    timm.create_model = create
    size = args.input_size
    grid = size // 14
    ours = create_algorithm("anomaly_dino", input_size=size, pretrained=False)
    state = {k: v for k, v in theirs.feature_encoder.feature_extractor.state_dict().items() if not k.startswith("head")}
    state["pos_embed"] = resample_abs_pos_embed(state["pos_embed"], (grid, grid), num_prefix_tokens=1, antialias=False)
    ours.model.extractor.model.load_state_dict(state)

    train = list(_images(args.n_train, size, 1).split(args.batch))
    test = list(_images(args.n_test, size, 2).split(args.batch))

    def fit_theirs():
        theirs.train()
        with torch.no_grad():
            for batch in train:
                theirs(batch)
        theirs.fit()
        theirs.eval()

    def fit_ours():
        ours.fit_epoch([])
        ours.pre_eval(train)

    results = {"ours": {}, "anomalib": {}}
    steps = len(train)
    for _ in range(1):  # warm-up
        fit_theirs()
        fit_ours()
    fit_t = {"anomalib": [], "ours": []}
    infer_t = {"anomalib": [], "ours": []}
    for _ in range(args.repeats):
        fit_t["anomalib"].append(_best(fit_theirs, 1))
        fit_t["ours"].append(_best(fit_ours, 1))
        with torch.no_grad():
            infer_t["anomalib"].append(_best(lambda: [theirs(b) for b in test], 1))
        infer_t["ours"].append(_best(lambda: [ours.predict(b) for b in test], 1))
    for side, row in results.items():
        row["train_step_ms"] = 1000 * min(fit_t[side]) / steps
        row["inference_ms_per_image"] = 1000 * min(infer_t[side]) / args.n_test

    with torch.no_grad():
        reference = [theirs(b) for b in test]
        distances = torch.cat([ours.model.patch_distances(b) for b in test])
    prediction = [ours.predict(b) for b in test]
    scores = np.concatenate([p.scores for p in prediction])
    ref_scores = torch.cat([r.pred_score[:, 0] for r in reference]).numpy()
    ref_maps = torch.cat([r.anomaly_map[:, 0] for r in reference]).numpy()
    nearest = gaussian_blur(F.interpolate(distances[:, None], size=size, mode="nearest")[:, 0], 4.0).numpy()
    score_diff = float(np.abs(scores - ref_scores).max())
    map_diff = float(np.abs(nearest - ref_maps).max())
    print(
        f"anomaly_dino vs anomalib 2.7.0: ViT-S/14 random init, {size} px, batch {args.batch}, {args.n_train} "
        f"train / {args.n_test} test images, {args.threads} thread(s), best of {args.repeats}"
    )
    print("| measure | ours | anomalib 2.7.0 | ours / anomalib |")
    print("|---|---|---|---|")
    for key, label in (
        ("train_step_ms", "train step (ms per batch)"),
        ("inference_ms_per_image", "inference (ms / image)"),
    ):
        a, b = results["ours"][key], results["anomalib"][key]
        print(f"| {label} | {a:.1f} | {b:.1f} | {a / b:.2f}x |")
    print(
        f"max |score difference| {score_diff:.2e}; max |map difference| (anomalib's nearest upsampling) {map_diff:.2e}"
    )
    if score_diff > 1e-4 or map_diff > 1e-4:
        raise SystemExit("outputs differ by more than 1e-4")


if __name__ == "__main__":
    main()
