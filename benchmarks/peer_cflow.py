"""Our CFlow-AD against anomalib 2.7.0's at equal outputs: train step and inference per image.

Usage::

    .venv/bin/python benchmarks/peer_cflow.py [--input-size 256] [--batch 8] [--blocks 8] [--cond 128]
        [--fibres 256] [--backbone resnet18] [--repeats 3] [--threads 1]

Both models are built at the same configuration (random-init encoder, layers 2 and 3, the
publication's 8 coupling blocks, 128-d condition and 256-fibre chunks by default) and anomalib's
gets our weights (``algorithms/tests/peers.py``: ``cflow_pair``), so both compute the same
function (checked here: per-fibre log-likelihoods within 1e-4 before timing). The same seeded
batch feeds both. Train step = one image batch: encoder forward, then per scale the shuffled
fibres in chunks of ``--fibres``, one Adam step per chunk (ours: ``Cflow.fit_epoch`` on a one-batch
loader; anomalib: its torch model, ``get_logp`` and ``torch.optim.Adam`` over all decoders, the loop
its Lightning ``training_step`` runs). With ``B h w`` divisible by the chunk size both take the same
number of steps. The one difference in the step: anomalib calls ``zero_grad()``, which in torch 2 drops
the gradients (``set_to_none=True``), so Adam steps only the decoder of the current scale; the official
code ran under torch 1.x, where ``zero_grad()`` zeroed them, so every chunk's Adam step also moves the
other scales' decoders along their momentum, which ours reproduces (``zero_grad(set_to_none=False)``).
Both are timed: anomalib as shipped, and anomalib with ``set_to_none=False`` (the same work as ours).
Inference per image = one batch through ``predict`` (ours: maps normalised by the
constant fixed in ``pre_eval``) / the eval-mode forward (anomalib: normalised by the batch maximum),
divided by the batch size. Fastest of ``--repeats`` alternating rounds (``benchmarks/peer_timing.py``).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input-size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--blocks", type=int, default=8)
    parser.add_argument("--cond", type=int, default=128)
    parser.add_argument("--fibres", type=int, default=256)
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import torch
    import torch.nn.functional as F

    torch.set_num_threads(args.threads)
    from peer_timing import best_of, report

    from algorithms.tests.peers import cflow_pair

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from anomalib.models.image.cflow.utils import get_logp, positional_encoding_2d

    ours, theirs = cflow_pair(
        args.input_size, backbone=args.backbone, cond_channels=args.cond, coupling_blocks=args.blocks,
        fibre_batch=args.fibres,
    )  # fmt: skip
    x = torch.randn(args.batch, 3, args.input_size, args.input_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():  # equal functions: per-fibre log p / C on both sides
        features = theirs.encoder(x)
        for level, (layer, our_map) in enumerate(zip(theirs.pool_layers, ours.model.log_prob_maps(x), strict=True)):
            feature = features[layer]
            c = feature.shape[1]
            z, log_det = theirs.decoders[level](
                feature.permute(0, 2, 3, 1).reshape(-1, c), [ours.model.condition(feature)]
            )
            torch.testing.assert_close(our_map.reshape(-1), get_logp(c, z, log_det) / c, atol=1e-4, rtol=1e-5)
    optimizer = torch.optim.Adam([p for d in theirs.decoders for p in d.parameters()], lr=2e-4)
    loader = [x]

    def their_step(set_to_none: bool = True) -> None:  # anomalib Cflow.training_step, without Lightning
        theirs.encoder.eval()
        activation = theirs.encoder(x)
        for level, layer in enumerate(theirs.pool_layers):
            feature = activation[layer].detach()
            b, c, h, w = feature.shape
            pos = positional_encoding_2d(theirs.condition_vector, h, w).unsqueeze(0).repeat(b, 1, 1, 1)
            c_r = pos.permute(0, 2, 3, 1).reshape(-1, theirs.condition_vector)
            e_r = feature.permute(0, 2, 3, 1).reshape(-1, c)
            n = b * h * w
            perm = torch.randperm(n)
            chunks = n // theirs.fiber_batch_size
            for k in range(chunks):
                end = (k + 1) * theirs.fiber_batch_size if k < chunks - 1 else n
                idx = perm[k * theirs.fiber_batch_size : end]
                optimizer.zero_grad(set_to_none=set_to_none)
                z, log_det = theirs.decoders[level](e_r[idx], [c_r[idx]])
                loss = -F.logsigmoid(get_logp(c, z, log_det) / c)
                loss.mean().backward()
                optimizer.step()

    def their_inference() -> None:
        theirs.eval()
        with torch.no_grad():
            theirs(x)

    train = best_of(
        {
            "ours": lambda: ours.fit_epoch(loader),
            "anomalib": their_step,
            "anomalib_all_decoders": lambda: their_step(set_to_none=False),
        },
        args.repeats,
    )
    ours.pre_eval(loader)  # training invalidates the per-scale constant; fix it once, outside the clock
    infer = best_of({"ours": lambda: ours.predict(x), "anomalib": their_inference}, args.repeats)
    report(
        f"CFlow-AD, {args.backbone} random init, layers 2-3, {args.blocks} coupling blocks, condition {args.cond}, "
        f"{args.fibres}-fibre chunks, {args.input_size} px, batch {args.batch}, {args.threads} thread(s), CPU time, "
        f"fastest of {args.repeats}",
        [
            ("train step (one image batch), anomalib as shipped", train["ours"], train["anomalib"]),
            ("train step, anomalib stepping every decoder per chunk", train["ours"], train["anomalib_all_decoders"]),
            ("inference per image", infer["ours"] / args.batch, infer["anomalib"] / args.batch),
        ],
    )


if __name__ == "__main__":
    main()
