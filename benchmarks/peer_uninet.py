"""Our UniNet against anomalib 2.7.0's at equal outputs: train step and inference per image.

Usage::

    .venv/bin/python benchmarks/peer_uninet.py [--input-size 128] [--batch 4] [--backbone resnet50]
        [--repeats 3] [--threads 1]

Both models are built with the same random-initialised teachers (anomalib hard-codes ResNet-50
channel counts: ``resnet50``, or ``wide_resnet50_2`` with our bottleneck built narrow as
anomalib's) and anomalib's gets our weights (``algorithms/tests/peers_uninet.py``), so both
compute the same anomaly maps (checked here before timing: within 1e-4). The same seeded batch
feeds both. Train step = teachers + bottleneck + student on the ``2B`` batch, DFS, the six-pair
contrastive loss, backward and an AdamW step on bottleneck, student, DFS and target teacher
(ours: ``UniNet.fit_epoch`` on a one-batch loader; anomalib: its torch model's training forward,
which adds its BCE head, and ``torch.optim.AdamW`` as its ``configure_optimizers``: amsgrad,
eps 1e-10). Inference per image = one batch through ``predict`` (ours: map and official top-k
score) / the eval-mode forward (anomalib: map and its max score), divided by the batch size.
CPU time, fastest of ``--repeats`` alternating rounds (``benchmarks/peer_timing.py``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input-size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--backbone", default="resnet50", choices=("resnet50", "wide_resnet50_2"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from peer_timing import best_of, report

    from algorithms.tests.peers_uninet import uninet_pair

    ours, theirs = uninet_pair(
        size=args.input_size, backbone=args.backbone, narrow_bottleneck=args.backbone == "wide_resnet50_2"
    )
    x = torch.randn(args.batch, 3, args.input_size, args.input_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        theirs_map = theirs.eval()(x).anomaly_map
    ours_map = torch.from_numpy(ours.predict(x).maps["anomaly_map"])
    torch.testing.assert_close(ours_map, theirs_map, atol=1e-4, rtol=0)

    optimizer = torch.optim.AdamW(
        [
            {"params": theirs.student.parameters()},
            {"params": theirs.bottleneck.parameters()},
            {"params": theirs.dfs.parameters()},
            {"params": theirs.teachers.target_teacher.parameters(), "lr": 1e-6},
        ],
        lr=5e-3, betas=(0.9, 0.999), weight_decay=1e-5, eps=1e-10, amsgrad=True,
    )  # fmt: skip
    labels = torch.zeros(args.batch)
    loader = [x]

    def their_step() -> None:
        theirs.train()
        loss = theirs(x, labels=labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    def their_inference() -> None:
        theirs.eval()
        with torch.no_grad():
            theirs(x)

    train = best_of({"ours": lambda: ours.fit_epoch(loader), "anomalib": their_step}, args.repeats)
    infer = best_of({"ours": lambda: ours.predict(x), "anomalib": their_inference}, args.repeats)
    report(
        f"UniNet, {args.backbone} random init, {args.input_size} px, batch {args.batch}, "
        f"{args.threads} thread(s), CPU time, fastest of {args.repeats}",
        [
            ("train step (one batch)", train["ours"], train["anomalib"]),
            ("inference per image", infer["ours"] / args.batch, infer["anomalib"] / args.batch),
        ],
    )


if __name__ == "__main__":
    main()
