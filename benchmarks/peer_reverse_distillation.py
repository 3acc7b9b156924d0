"""Our Reverse Distillation against anomalib 2.7.0's at equal outputs: train step and inference per image.

Usage::

    .venv/bin/python benchmarks/peer_reverse_distillation.py [--input-size 256] [--batch 8]
        [--backbone resnet18] [--repeats 5] [--threads 1]

Both models are built at the same configuration (random-init encoder, the backbone's default
OCBE and de-ResNet) and anomalib's gets our weights (``algorithms/tests/peers.py``), so both
compute the same function (checked here before timing: features within 1e-4). The same seeded
batch feeds both. Train step = forward + cosine loss + backward + Adam step on bottleneck and
decoder (ours: ``ReverseDistillation.fit_epoch`` on a one-batch loader; anomalib: its torch model,
``ReverseDistillationLoss`` and ``torch.optim.Adam`` as its ``configure_optimizers``). Inference
per image = one batch through ``predict`` (ours, scipy-exact smoothing) / the eval-mode forward
(anomalib, ``GaussianBlur2d``), divided by the batch size. CPU time, fastest of ``--repeats``
alternating rounds (``benchmarks/peer_timing.py``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input-size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from peer_timing import best_of, report

    from algorithms.tests.peers import ReverseDistillationLoss, reverse_distillation_pair

    ours, theirs = reverse_distillation_pair(size=args.input_size, backbone=args.backbone)
    x = torch.randn(args.batch, 3, args.input_size, args.input_size, generator=torch.Generator().manual_seed(0))
    theirs.train()
    with torch.no_grad():
        for a, b in zip(ours.model(x)[1], theirs(x)[1], strict=True):
            torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-5)
    optimizer = torch.optim.Adam([*theirs.decoder.parameters(), *theirs.bottleneck.parameters()], lr=0.005,
                                 betas=(0.5, 0.999))  # fmt: skip
    loader = [x]

    def their_step() -> None:
        theirs.train()
        loss = ReverseDistillationLoss()(*theirs(x))
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
        f"Reverse Distillation, {args.backbone} random init, {args.input_size} px, batch {args.batch}, "
        f"{args.threads} thread(s), CPU time, fastest of {args.repeats}",
        [
            ("train step (one batch)", train["ours"], train["anomalib"]),
            ("inference per image", infer["ours"] / args.batch, infer["anomalib"] / args.batch),
        ],
    )


if __name__ == "__main__":
    main()
