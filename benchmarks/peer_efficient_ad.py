"""Our EfficientAD against anomalib 2.7.0's at equal outputs: train step and inference per image.

Usage::

    .venv/bin/python benchmarks/peer_efficient_ad.py [--input-size 256] [--batch 1]
        [--model-size small] [--out-channels 384] [--repeats 5] [--threads 1]

Both models are built at the same configuration (random teacher, full-width PDNs; the
publication's batch size 1 and 384 channels by default) and anomalib's gets our weights and
teacher statistics (``algorithms/tests/peers.py``), so both compute the same function (checked
here before timing: unnormalised maps within 1e-4). Train step = hard student-teacher loss,
autoencoder and student-autoencoder losses on a colour-jittered copy, backward, Adam step (ours:
``EfficientAd.fit_epoch`` on a one-batch loader, which also fingerprints the batch for the
hold-out; anomalib: its ``compute_student_teacher_distance`` and the loss lines of
``compute_losses`` without the ImageNet penalty, which ours has off by default, and
``torch.optim.Adam`` as its ``configure_optimizers``). Inference per image = one batch through
``predict`` (ours) / the eval-mode forward (anomalib), divided by the batch size. CPU time,
fastest of ``--repeats`` alternating rounds (``benchmarks/peer_timing.py``).
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
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--model-size", default="small", choices=["small", "medium"])
    parser.add_argument("--out-channels", type=int, default=384)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from peer_timing import best_of, report

    from algorithms.tests.peers import IMAGENET_MEAN, IMAGENET_STD, efficient_ad_pair, sync_efficient_ad

    c = args.out_channels
    ours, theirs = efficient_ad_pair(size=args.input_size, model_size=args.model_size, out_channels=c)
    x = torch.randn(args.batch, 3, args.input_size, args.input_size, generator=torch.Generator().manual_seed(0))
    unit = x * IMAGENET_STD + IMAGENET_MEAN
    loader = [x]
    ours.hparams["train_steps"] = 10**9  # keep training through the warm-up and the repeats
    ours.fit_epoch(loader)  # teacher statistics (one pass) happen once, before timing
    sync_efficient_ad(ours, theirs)
    ours.eval()
    theirs.eval()
    with torch.no_grad():
        prediction = ours.predict(x)
        their_st, _ = theirs.get_maps(unit, normalize=False)
    ours_st = torch.from_numpy(prediction.maps["student_teacher"])
    torch.testing.assert_close(ours_st, their_st[:, 0], atol=1e-4, rtol=1e-5)
    optimizer = torch.optim.Adam([*theirs.student.parameters(), *theirs.ae.parameters()], lr=1e-4, weight_decay=1e-5)

    def their_step() -> None:
        theirs.train()
        _, distance_st = theirs.compute_student_teacher_distance(unit)
        d_hard = torch.quantile(distance_st.flatten(), 0.999)
        loss_st = torch.mean(distance_st[distance_st >= d_hard])
        aug = theirs.choose_random_aug_image(unit)
        ae_out = theirs.ae(aug, unit.shape[-2:])
        with torch.no_grad():
            teacher_aug = (theirs.teacher(aug) - theirs.mean_std["mean"]) / theirs.mean_std["std"]
        student_aug = theirs.student(aug)[:, c:]
        loss = loss_st + torch.mean((teacher_aug - ae_out) ** 2) + torch.mean((ae_out - student_aug) ** 2)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    def their_inference() -> None:
        theirs.eval()
        with torch.no_grad():
            theirs(unit)

    train = best_of({"ours": lambda: ours.fit_epoch(loader), "anomalib": their_step}, args.repeats)
    infer = best_of({"ours": lambda: ours.predict(x), "anomalib": their_inference}, args.repeats)
    report(
        f"EfficientAD-{args.model_size[0].upper()}, random teacher, {c} channels, {args.input_size} px, "
        f"batch {args.batch}, {args.threads} thread(s), CPU time, fastest of {args.repeats}",
        [
            ("train step (one batch)", train["ours"], train["anomalib"]),
            ("inference per image", infer["ours"] / args.batch, infer["anomalib"] / args.batch),
        ],
    )


if __name__ == "__main__":
    main()
