"""Our PatchCore against anomalib's (2.7.0) on the same images, backbone weights and coreset ratio.

Usage::

    .venv/bin/python benchmarks/patchcore_vs_anomalib.py [--category woven] [--data /tmp/vadi_synth]
        [--backbone resnet18] [--input-size 128] [--n-train 60] [--ratio 0.1]

Both sides get the same preprocessed tensors (our ``make_loader``), the same random-initialised
timm backbone (its weights are saved once and loaded into both feature extractors), layers 2+3,
the same coreset ratio, 9 neighbours for the image-score reweighting and sigma 4 smoothing.
Each side runs in its own fresh subprocess so that the peak resident memory (``ru_maxrss``) is
its own. The printed table has fit time, inference time per image, peak RSS and the four
metrics of ``evaluation.metrics`` (after ``to_protocol``), with ours/anomalib ratios.

Known differences by design (both are "PatchCore"): anomalib concatenates the 3x3-averaged raw
layer features (no adaptive pooling to 1024 dimensions) and runs the exact k-center greedy
on a sparse random projection; ours follows the paper's reference code (adaptive pooling to
``pretrain/target_embed_dim``, approximate greedy on a 128-d Gaussian projection).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _loaders(args):
    from algorithms.data import load_category, make_loader

    category = load_category(f"synthetic/{args.category}", roots={"synthetic": args.data})
    train = make_loader(category.train_images()[: args.n_train], size=args.input_size, batch_size=16)
    test = make_loader(category.test_images(), size=args.input_size, batch_size=16)
    return category, list(train), list(test)


def _metrics(category, scores, maps):
    import numpy as np

    from evaluation.metrics import evaluate, to_protocol

    gt = category.ground_truth()
    masks, protocol_maps = to_protocol(gt.masks, np.concatenate(maps))
    return evaluate(masks, protocol_maps, gt.labels, np.concatenate(scores))


def run_ours(args) -> dict:
    import torch

    from algorithms.registry import create_algorithm

    torch.manual_seed(0)
    category, train, test = _loaders(args)
    model = create_algorithm(
        "patchcore", input_size=args.input_size, backbone=args.backbone, pretrained=True,
        weights_path=args.weights, coreset_ratio=args.ratio, num_neighbours=9, blur_sigma=4.0,
        pretrain_embed_dim=args.embed_dim, target_embed_dim=args.embed_dim,
    )  # fmt: skip
    start = time.perf_counter()
    model.pre_eval(train)
    fit_s = time.perf_counter() - start
    scores, maps = [], []
    start = time.perf_counter()
    for batch in test:
        prediction = model.predict(batch)
        scores.append(prediction.scores)
        maps.append(prediction.maps["anomaly_map"])
    infer_s = time.perf_counter() - start
    return {"fit_s": fit_s, "infer_s_per_image": infer_s / len(category.test_ids),
            "bank": list(model.memory_bank.shape), "metrics": _metrics(category, scores, maps)}  # fmt: skip


def run_anomalib(args) -> dict:
    import torch
    from anomalib.models.image.patchcore.torch_model import PatchcoreModel

    torch.manual_seed(0)
    category, train, test = _loaders(args)
    model = PatchcoreModel(layers=["layer2", "layer3"], backbone=args.backbone, pre_trained=False, num_neighbors=9)
    state = torch.load(args.weights, map_location="cpu", weights_only=True)
    extractor = model.feature_extractor.feature_extractor
    extractor.load_state_dict({k: v for k, v in state.items() if k in extractor.state_dict()}, strict=True)
    start = time.perf_counter()
    model.train()
    with torch.no_grad():
        for batch in train:
            model(batch)
    model.subsample_embedding(args.ratio)
    fit_s = time.perf_counter() - start
    model.eval()
    scores, maps = [], []
    start = time.perf_counter()
    with torch.no_grad():
        for batch in test:
            out = model(batch)
            scores.append(out.pred_score.reshape(-1).numpy())
            maps.append(out.anomaly_map[:, 0].numpy())
    infer_s = time.perf_counter() - start
    return {"fit_s": fit_s, "infer_s_per_image": infer_s / len(category.test_ids),
            "bank": list(model.memory_bank.shape), "metrics": _metrics(category, scores, maps)}  # fmt: skip


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--category", default="woven")
    parser.add_argument("--data", default=str(ROOT / "var/data/synthetic"))
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--input-size", type=int, default=128)
    parser.add_argument("--n-train", type=int, default=60)
    parser.add_argument("--ratio", type=float, default=0.1)
    parser.add_argument("--embed-dim", type=int, default=1024)
    parser.add_argument("--weights", default="/tmp/patchcore_bench_backbone.pth")
    parser.add_argument("--side", choices=["ours", "anomalib"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.side:  # child process: run one side, print JSON
        result = run_ours(args) if args.side == "ours" else run_anomalib(args)
        result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result))
        return 0

    import timm
    import torch

    data = Path(args.data)
    if not (data / args.category).is_dir():
        from algorithms.data import generate_suite

        generate_suite(data, seed=0, categories=[args.category])
    torch.manual_seed(0)
    torch.save(timm.create_model(args.backbone, pretrained=False).state_dict(), args.weights)
    base = [sys.executable, __file__, "--category", args.category, "--data", str(data), "--backbone", args.backbone,
            "--input-size", str(args.input_size), "--n-train", str(args.n_train), "--ratio", str(args.ratio),
            "--embed-dim", str(args.embed_dim), "--weights", args.weights]  # fmt: skip
    results = {}
    for side in ("ours", "anomalib"):
        out = subprocess.run([*base, "--side", side], capture_output=True, text=True, check=False)
        if out.returncode != 0:
            print(out.stderr, file=sys.stderr)
            return 1
        results[side] = json.loads(out.stdout.strip().splitlines()[-1])
    ours, theirs = results["ours"], results["anomalib"]
    print(f"synthetic/{args.category}, {args.backbone} (random init, same weights both sides), {args.input_size} px, "
          f"{args.n_train} train images, coreset ratio {args.ratio}; bank ours {ours['bank']}, "
          f"anomalib {theirs['bank']}")  # fmt: skip
    print()
    print("| measure | ours | anomalib 2.7.0 | ours / anomalib |")
    print("|---|---|---|---|")
    for key, label in (("fit_s", "fit (memory bank + coreset), s"),
                       ("infer_s_per_image", "inference per image, s"), ("peak_rss_mb", "peak RSS, MB")):  # fmt: skip
        print(f"| {label} | {ours[key]:.4f} | {theirs[key]:.4f} | {ours[key] / theirs[key]:.2f} |")
    for key, value in ours["metrics"].items():
        print(f"| {key} | {value:.4f} | {theirs['metrics'][key]:.4f} | {value - theirs['metrics'][key]:+.4f} (diff) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
