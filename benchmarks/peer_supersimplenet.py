"""Our SuperSimpleNet against anomalib 2.7's ``SupersimplenetModel``: training step and inference time.

Usage::

    .venv/bin/python benchmarks/peer_supersimplenet.py [--backbone resnet18] [--size 256] [--batch 8]
        [--repeats 5] [--variant icpr|jims]

Both models are built with the same random-initialised backbone (no network), anomalib's weights
are copied into ours through the documented mapping
(``algorithms/tests/test_supersimplenet_anomalib.py``: ``map_anomalib_state``) and ours runs with
anomalib's ``align_corners=False``, so the outputs are equal (the largest differences are
printed). One thread; each measure is the best of ``--repeats``, the two sides alternating.

* inference: one batch through anomalib's ``forward`` (eval, no grad) against our detector's
  public ``predict`` (eval, no grad, output checks and numpy conversion included), per image;
* training step: forward with freshly synthesised anomalies (Perlin masks and noise), loss,
  backward and one AdamW step with the publication's parameter groups, per step.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def build(args):
    from anomalib.models.image.supersimplenet import torch_model
    from anomalib.models.image.supersimplenet.loss import SSNLoss

    from algorithms.registry import create_algorithm
    from algorithms.tests.test_supersimplenet_anomalib import map_anomalib_state

    torch_model.TimmFeatureExtractor = functools.partial(torch_model.TimmFeatureExtractor, pre_trained=False)
    adapt = args.variant == "icpr"
    torch.manual_seed(0)
    theirs = torch_model.SupersimplenetModel(backbone=args.backbone, layers=["layer2", "layer3"], stop_grad=True,
                                             adapt_cls_features=adapt)  # fmt: skip
    ours = create_algorithm("supersimplenet", input_size=args.size, backbone=args.backbone, pretrained=False,
                            adapt_cls_features=adapt, align_corners=False)  # fmt: skip
    ours.model.load_state_dict(map_anomalib_state(theirs), strict=True)
    their_opt = torch.optim.AdamW([
        {"params": theirs.adaptor.parameters(), "lr": 1e-4},
        {"params": theirs.segdec.parameters(), "lr": 2e-4, "weight_decay": 1e-5},
    ])  # fmt: skip (anomalib's configure_optimizers)
    return theirs, ours, their_opt, SSNLoss()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--variant", choices=["icpr", "jims"], default="icpr")
    args = parser.parse_args()
    torch.set_num_threads(1)
    theirs, ours, their_opt, their_loss = build(args)
    images = torch.randn(args.batch, 3, args.size, args.size, generator=torch.Generator().manual_seed(0))

    theirs.eval()
    with torch.no_grad():
        expected = theirs(images)
    prediction = ours.predict(images)
    map_diff = (torch.sigmoid(torch.from_numpy(prediction.maps["anomaly_map"])) - expected.anomaly_map[:, 0]).abs()
    score_diff = (torch.sigmoid(torch.from_numpy(prediction.scores)) - expected.pred_score).abs()

    def their_infer():
        theirs.eval()
        with torch.no_grad():
            theirs(images)

    def our_infer():
        ours.predict(images)

    normal = torch.zeros(args.batch)  # what anomalib's Lightning module passes for normal images

    def their_step():
        theirs.train()
        anomaly_map, score, masks, labels = theirs(images, labels=normal)
        loss = their_loss(pred_map=anomaly_map, pred_score=score, target_mask=masks, target_label=labels)
        their_opt.zero_grad(set_to_none=True)
        loss.backward()
        their_opt.step()

    optimizer = ours._get_optimizer()
    mask_gen, noise_gen = torch.Generator().manual_seed(0), torch.Generator().manual_seed(1)

    def our_step():
        ours.train()
        loss = ours.training_loss(images, mask_gen, noise_gen)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    best = {}
    for repeat in range(args.repeats + 1):  # the first round warms up
        order = [("anomalib", their_infer, their_step), ("ours", our_infer, our_step)]
        for side, infer, step in order if repeat % 2 else order[::-1]:
            for kind, fn in (("infer", infer), ("step", step)):
                start = time.perf_counter()
                fn()
                elapsed = time.perf_counter() - start
                if repeat:
                    best[(side, kind)] = min(best.get((side, kind), float("inf")), elapsed)
    infer = {side: best[(side, "infer")] / args.batch for side in ("ours", "anomalib")}
    step = {side: best[(side, "step")] for side in ("ours", "anomalib")}
    print(f"SuperSimpleNet ({args.variant}), {args.backbone} random init, {args.size} px, batch {args.batch}, "
          f"1 thread, best of {args.repeats}; max |sigmoid(ours) - anomalib|: map {map_diff.max():.1e}, "
          f"score {score_diff.max():.1e}")  # fmt: skip
    print("| measure | ours | anomalib 2.7 | ours / anomalib |")
    print("|---|---|---|---|")
    print(f"| inference per image | {infer['ours'] * 1e3:.1f} ms | {infer['anomalib'] * 1e3:.1f} ms | "
          f"{infer['ours'] / infer['anomalib']:.2f}x |")  # fmt: skip
    print(f"| training step (batch {args.batch}) | {step['ours'] * 1e3:.0f} ms | {step['anomalib'] * 1e3:.0f} ms | "
          f"{step['ours'] / step['anomalib']:.2f}x |")  # fmt: skip


if __name__ == "__main__":
    main()
