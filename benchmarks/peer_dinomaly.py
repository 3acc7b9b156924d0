"""Our Dinomaly against anomalib 2.7's on the same images, encoder and trainable weights.

Usage::

    .venv/bin/python benchmarks/peer_dinomaly.py [--input-size 112] [--batch 8] [--n-test 8]
        [--repeats 5] [--threads 1]

Both sides: a random-initialised DINOv2-with-registers ViT-S/14 encoder (full size: width 384,
blocks 2-9 tapped; anomalib hard-codes ``pretrained=True``, so its timm download is switched off),
8 linear-attention decoder blocks, anomalib's trainable weights copied into ours (our MLP biases,
which anomalib lacks, stay at their initial 0, so both compute the same function). "Train step" =
forward, hard-mining loss, backward, gradient clipping 0.1 and one StableAdamW step (AMSGrad,
lr 2e-3, wd 1e-4) on one batch, bottleneck dropout on; "inference" = scoring one image (batch of
``--batch``), per image. Each time is the fastest of ``--repeats`` (the two sides alternate). The
raw anomaly maps (before each side's blur) must agree within 1e-4.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _once(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input-size", type=int, default=112)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--n-test", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import numpy as np
    import timm
    import torch
    from timm.layers import resample_abs_pos_embed

    from algorithms.dinomaly.model import anomaly_map
    from algorithms.registry import create_algorithm

    torch.set_num_threads(args.threads)
    from anomalib.models.image.dinomaly.components import StableAdamW as TheirAdamW
    from anomalib.models.image.dinomaly.torch_model import DinomalyModel

    create = timm.create_model
    timm.create_model = lambda name, pretrained=False, **kw: create(name, pretrained=False, **kw)
    torch.manual_seed(0)
    theirs = DinomalyModel(encoder_name="vit_small_patch14_reg4_dinov2")
    timm.create_model = create
    size, grid = args.input_size, args.input_size // 14
    ours = create_algorithm(
        "dinomaly", input_size=size, backbone="vit_small_patch14_reg4_dinov2.lvd142m", pretrained=False, map_size=256
    )
    encoder = {k: v for k, v in theirs.encoder.feature_extractor.state_dict().items() if not k.startswith("head")}
    encoder["pos_embed"] = resample_abs_pos_embed(
        encoder["pos_embed"], (grid, grid), num_prefix_tokens=0, antialias=False
    )
    encoder = {k: v for k, v in encoder.items() if not k.startswith(("blocks.10.", "blocks.11.", "norm."))}
    ours.model.encoder.model.load_state_dict(encoder, strict=False)
    state = {
        k.replace("bottleneck.0.", "bottleneck."): v
        for k, v in theirs.state_dict().items()
        if k.startswith(("bottleneck.", "decoder."))
    }
    ours.model.load_state_dict(state, strict=False)

    generator = torch.Generator().manual_seed(1)
    train = torch.randn(args.batch, 3, size, size, generator=generator)
    test = list(torch.randn(args.n_test, 3, size, size, generator=generator).split(args.batch))

    their_params = [*theirs.bottleneck.parameters(), *theirs.decoder.parameters()]
    their_opt = TheirAdamW(their_params, lr=2e-3, betas=(0.9, 0.999), weight_decay=1e-4, amsgrad=True, eps=1e-8)
    our_opt = ours._get_optimizer()
    our_params = ours.model.trainable_parameters()

    def step_theirs():
        theirs.train()
        loss = theirs(train, global_step=500)
        their_opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(their_params, max_norm=0.1)
        their_opt.step()

    def step_ours():
        ours.train()
        loss = ours.training_loss(train, 500)
        our_opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(our_params, max_norm=0.1)
        our_opt.step()

    def infer_theirs():
        theirs.eval()
        with torch.no_grad():
            for batch in test:
                theirs(batch)

    def infer_ours():
        for batch in test:
            ours.predict(batch)

    # outputs first, with the copied weights
    theirs.eval()
    ours.eval()
    with torch.no_grad():
        ref = torch.cat([theirs(b).anomaly_map[:, 0] for b in test])
        raw = torch.cat([anomaly_map(*ours.model(b), size) for b in test])
    diff = float((ref - raw).abs().max())

    times = {"ours": {"train": [], "infer": []}, "anomalib": {"train": [], "infer": []}}
    step_theirs(), step_ours(), infer_theirs(), infer_ours()  # warm-up
    for _ in range(args.repeats):
        times["anomalib"]["train"].append(_once(step_theirs))
        times["ours"]["train"].append(_once(step_ours))
        times["anomalib"]["infer"].append(_once(infer_theirs))
        times["ours"]["infer"].append(_once(infer_ours))
    print(
        f"dinomaly vs anomalib 2.7.0: ViT-S/14-reg random init, {size} px, batch {args.batch}, {args.n_test} test "
        f"images, {args.threads} thread(s), best of {args.repeats}"
    )
    print("| measure | ours | anomalib 2.7.0 | ours / anomalib |")
    print("|---|---|---|---|")
    rows = (("train", "train step (ms per batch)", 1), ("infer", "inference (ms / image)", args.n_test))
    for key, label, per in rows:
        a, b = 1000 * min(times["ours"][key]) / per, 1000 * min(times["anomalib"][key]) / per
        print(f"| {label} | {a:.1f} | {b:.1f} | {a / b:.2f}x |")
    print(f"max |raw map difference| {diff:.2e}")
    if not np.isfinite(diff) or diff > 1e-4:
        raise SystemExit("outputs differ by more than 1e-4")


if __name__ == "__main__":
    main()
