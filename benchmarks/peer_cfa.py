"""Our CFA against anomalib 2.7.0's at equal outputs: train step and inference per image.

Usage::

    .venv/bin/python benchmarks/peer_cfa.py [--input-size 256] [--batch 4] [--repeats 5] [--threads 1]

Both models are resnet18 (random init; anomalib's CFA supports resnet18 and wide_resnet50_2) with
the same weights (``algorithms/tests/peers_cfa.py``: anomalib's copied into ours) and the same
memory, built by each from the same batches; the maps are checked equal (1e-4) before timing.
Train step = forward + distances to the memory + soft-boundary loss + backward + AdamW (amsgrad)
step (ours: ``Cfa.fit_epoch`` on a one-batch loader; anomalib: its torch model in train mode,
``CfaLoss``, ``backward(retain_graph=True)`` and ``torch.optim.AdamW`` as its Lightning module
does). Inference per image = one batch through ``predict`` (ours) / the eval-mode forward
(anomalib, map and score), divided by the batch size. Clock: the process's CPU time with one
thread; each side's fastest of ``--repeats`` rounds, the two sides alternating within every round
(background load on a shared machine then falls on both alike).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def best_of(sides: dict, repeats: int) -> dict[str, float]:
    for fn in sides.values():  # warm-up
        fn()
    best = dict.fromkeys(sides, float("inf"))
    names = list(sides)
    for repeat in range(repeats):
        for name in names if repeat % 2 == 0 else reversed(names):
            start = time.process_time()
            sides[name]()
            best[name] = min(best[name], time.process_time() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input-size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    from algorithms.tests.peers_cfa import CfaLoss, anomalib_memory, cfa_pair

    ours, theirs = cfa_pair(size=args.input_size)
    generator = torch.Generator().manual_seed(0)
    train = [torch.randn(args.batch, 3, args.input_size, args.input_size, generator=generator) for _ in range(2)]
    x = torch.randn(args.batch, 3, args.input_size, args.input_size, generator=generator)
    ours.model.build_memory(train)
    anomalib_memory(theirs, train)
    theirs.eval()
    with torch.no_grad():
        reference = theirs(x)
    prediction = ours.predict(x)
    np.testing.assert_allclose(prediction.maps["anomaly_map"], reference.anomaly_map.numpy(), atol=1e-4, rtol=0)
    np.testing.assert_allclose(prediction.scores, reference.pred_score.numpy(), atol=1e-4, rtol=0)

    loss_fn = CfaLoss(num_nearest_neighbors=3, num_hard_negative_features=3, radius=1e-5)
    optimizer = torch.optim.AdamW(theirs.parameters(), lr=1e-3, weight_decay=5e-4, amsgrad=True)

    def their_step() -> None:
        theirs.train()
        loss = loss_fn(theirs(x))
        optimizer.zero_grad()
        loss.backward(retain_graph=True)  # as anomalib's Lightning module (CVS-122673)
        optimizer.step()

    def their_inference() -> None:
        theirs.eval()
        with torch.no_grad():
            theirs(x)

    train_times = best_of({"ours": lambda: ours.fit_epoch([x]), "anomalib": their_step}, args.repeats)
    infer_times = best_of({"ours": lambda: ours.predict(x), "anomalib": their_inference}, args.repeats)
    per_image = {k: v / args.batch for k, v in infer_times.items()}
    print(f"\nCFA, resnet18 random init, {args.input_size} px, batch {args.batch}, {args.threads} thread(s), "
          f"CPU time, best of {args.repeats} (maps equal within 1e-4)\n")  # fmt: skip
    print("| measure | ours | anomalib 2.7.0 | ours / anomalib |")
    print("|---|---|---|---|")
    for name, times in (("train step (batch)", train_times), ("inference per image", per_image)):
        print(f"| {name} | {times['ours'] * 1e3:.1f} ms | {times['anomalib'] * 1e3:.1f} ms | "
              f"{times['ours'] / times['anomalib']:.2f}x |")  # fmt: skip


if __name__ == "__main__":
    main()
