"""Our INP-Former against anomalib 2.7.0's at equal outputs: train step and inference per image.

Usage::

    .venv/bin/python benchmarks/peer_inp_former.py [--input-size 112] [--batch 8] [--width 384]
        [--heads 6] [--repeats 3] [--threads 1]

Both sides: a random-initialised DINOv2-with-registers ViT-S/14 layout (full size by default: width
384, 6 heads, blocks 2-9 tapped; anomalib hard-codes ``pretrained=True``, so its timm download is
switched off), one INP Extractor block, 6 INPs, 8 INP-guided decoder blocks, anomalib's weights
copied into ours (``algorithms/tests/peers_inp_former.py``; our MLP biases, which anomalib lacks,
stay at their initial 0, so both compute the same function: the raw maps are checked within 1e-4
before timing). The same seeded batch feeds both. Train step = forward, soft-mining + 0.2 x INP
coherence loss, backward, gradient-norm clipping 0.1 and one StableAdamW step (AMSGrad, lr 1e-3,
wd 1e-4, eps 1e-10): ours ``InpFormer.fit_epoch`` on a one-batch loader, anomalib its torch model
in training mode (which returns the loss) with anomalib's own ``StableAdamW``, what its Lightning
``training_step`` runs. Inference per image = one batch through ``predict`` (ours: the official
256 px blur and top-1 % score) / the eval-mode forward (anomalib: blur at the input size), divided
by the batch size. Fastest of ``--repeats`` alternating rounds in CPU time (``benchmarks/peer_timing.py``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input-size", type=int, default=112)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--width", type=int, default=384)
    parser.add_argument("--heads", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from anomalib.models.image.dinomaly.components import StableAdamW as TheirAdamW
    from peer_timing import best_of, report

    from algorithms.components.vit_reconstruction import cosine_anomaly_map
    from algorithms.tests.peers_inp_former import inp_former_pair

    size = args.input_size
    theirs, ours = inp_former_pair(size, args.width, args.heads)
    ours.hparams["map_size"] = 256  # the official evaluation size
    x = torch.randn(args.batch, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        en_t, de_t, _ = theirs.get_encoder_decoder_inploss(x)
        raw_t, _ = theirs.calculate_anomaly_maps(en_t, de_t, out_size=size)
        raw = cosine_anomaly_map(*ours.model(x)[:2], size)
    diff = float((raw - raw_t[:, 0]).abs().max())
    if not diff <= 1e-4:
        raise SystemExit(f"raw maps differ by {diff:.2e} (> 1e-4)")

    their_params = [
        *theirs.bottleneck.parameters(),
        *theirs.decoder.parameters(),
        *theirs.aggregation.parameters(),
        *theirs.prototype_token.parameters(),
    ]
    their_opt = TheirAdamW(their_params, lr=1e-3, betas=(0.9, 0.999), weight_decay=1e-4, amsgrad=True, eps=1e-10)
    loader = [x]

    def their_step() -> None:
        theirs.train()
        loss = theirs(x)
        their_opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(their_params, max_norm=0.1)
        their_opt.step()

    def their_inference() -> None:
        theirs.eval()
        with torch.no_grad():
            theirs(x)

    train = best_of({"ours": lambda: ours.fit_epoch(loader), "anomalib": their_step}, args.repeats)
    infer = best_of({"ours": lambda: ours.predict(x), "anomalib": their_inference}, args.repeats)
    report(
        f"INP-Former, ViT-S/14-reg layout (width {args.width}, {args.heads} heads) random init, {size} px, "
        f"batch {args.batch}, {args.threads} thread(s), CPU time, fastest of {args.repeats}; "
        f"max |raw map difference| {diff:.1e}",
        [
            ("train step (one batch)", train["ours"], train["anomalib"]),
            ("inference per image", infer["ours"] / args.batch, infer["anomalib"] / args.batch),
        ],
    )


if __name__ == "__main__":
    main()
