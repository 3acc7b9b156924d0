"""Our GLASS against anomalib 2.7.0's ``GlassModel`` at equal outputs: train step and inference per image.

Usage::

    .venv/bin/python benchmarks/peer_glass.py [--input-size 96] [--batch 4] [--backbone resnet18]
        [--dim 1536] [--hidden 1024] [--steps 20] [--repeats 3] [--threads 1]

Both models are built at the same configuration (random-initialised backbone, frozen on both
sides: anomalib's official frozen path, ``pre_trained`` set after construction), anomalib's
weights are copied into ours (``algorithms/tests/test_glass_anomalib.py``: ``map_anomalib_state``)
and ours smooths its maps with anomalib's reflect border, so both compute the same maps (checked
here within 1e-4 before timing). The same seeded batch feeds both. Three measures, each the
fastest of ``--repeats`` alternating rounds of CPU time (``benchmarks/peer_timing.py``):

* train step, same LAS: both get one given LAS batch (images + masks; anomalib's augmentor is
  replaced by it) and run the features, 20 gradient-ascent steps, the loss, backward and the
  official optimisers (Adam for the projection, AdamW for the discriminator) once;
* train step, own LAS: the same, each side synthesising its own local anomalies (ours: the
  official recipe on the CPU, procedural textures; anomalib: its ``PerlinAnomalyGenerator``);
* inference per image: one batch through ``predict`` (ours) / the eval-mode forward (anomalib).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input-size", type=int, default=96)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--dim", type=int, default=1536, help="pretrain and target embedding dimension")
    parser.add_argument("--hidden", type=int, default=1024, help="discriminator width")
    parser.add_argument("--steps", type=int, default=20, help="gradient-ascent steps")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from anomalib.models.image.glass import torch_model
    from peer_timing import best_of, report

    from algorithms.registry import create_algorithm
    from algorithms.tests.test_glass_anomalib import _FixedAugmentor, map_anomalib_state

    size = args.input_size
    torch.manual_seed(0)
    theirs = torch_model.GlassModel(
        input_shape=(size, size),
        backbone=args.backbone,
        pre_trained=False,
        layers=["layer2", "layer3"],
        pretrain_embed_dim=args.dim,
        target_embed_dim=args.dim,
        discriminator_hidden=args.hidden,
        step=args.steps,
    )
    theirs.pre_trained = True  # frozen backbone (eval, no grad), as the official code and ours
    ours = create_algorithm(
        "glass",
        input_size=size,
        backbone=args.backbone,
        pretrained=False,
        pretrain_embed_dim=args.dim,
        target_embed_dim=args.dim,
        dsc_hidden=args.hidden,
        ascent_steps=args.steps,
        blur_border="reflect",
    )
    ours.model.load_state_dict(map_anomalib_state(theirs), strict=True)
    x = torch.randn(args.batch, 3, size, size, generator=torch.Generator().manual_seed(0))

    theirs.eval()
    with torch.no_grad():
        expected = theirs(x)
    prediction = ours.predict(x)
    map_diff = (torch.from_numpy(prediction.maps["anomaly_map"]) - expected.anomaly_map).abs().max()
    score_diff = (torch.from_numpy(prediction.scores) - expected.pred_score).abs().max()
    if not (map_diff <= 1e-4 and score_diff <= 1e-4):
        raise SystemExit(f"outputs differ: map {map_diff:.1e}, score {score_diff:.1e}")

    with torch.no_grad():
        theirs.center = ours.compute_center([x])  # they need it for r_t even in manifold mode
    grid = ours.model.embed(x[:1]).shape[1]
    augmented, masks = ours.synthesize(x, grid, torch.Generator().manual_seed(1))
    pixel = torch.nn.functional.interpolate(masks, size=(size, size), mode="nearest")
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    own_augmentor = theirs.augmentor
    fixed_augmentor = _FixedAugmentor(augmented * std + mean, pixel)

    their_opts = (
        torch.optim.Adam(theirs.projection.parameters(), lr=1e-4, weight_decay=1e-5),
        torch.optim.AdamW(theirs.discriminator.parameters(), lr=2e-4),
    )  # anomalib's configure_optimizers (pre_projection 1, frozen backbone)
    our_opts = ours._get_optimizers()
    noise = torch.Generator().manual_seed(2)

    def step(loss: torch.Tensor, optimizers) -> None:
        for optimizer in optimizers:
            optimizer.zero_grad(set_to_none=True)
        loss.backward()
        for optimizer in optimizers:
            optimizer.step()

    def their_step(augmentor) -> None:
        theirs.augmentor = augmentor
        theirs.train()
        step(theirs(x)[-1], their_opts)

    def our_step_same_las() -> None:
        ours.train()
        d = args.dim
        true = ours.model.projected_features(x).reshape(-1, d)
        fake = ours.model.projected_features(augmented).reshape(-1, d)
        eps = torch.randn(true.shape, generator=noise) * 0.015
        step(ours.loss_from_features(true, fake, masks.reshape(-1), eps)[0], our_opts)

    def our_step_own_las() -> None:
        ours.train()
        step(ours.training_loss(x, torch.Generator().manual_seed(3), noise)[0], our_opts)

    def their_inference() -> None:
        theirs.eval()
        with torch.no_grad():
            theirs(x)

    same = best_of({"ours": our_step_same_las, "anomalib": lambda: their_step(fixed_augmentor)}, args.repeats)
    own = best_of({"ours": our_step_own_las, "anomalib": lambda: their_step(own_augmentor)}, args.repeats)
    infer = best_of({"ours": lambda: ours.predict(x), "anomalib": their_inference}, args.repeats)
    report(
        f"GLASS, {args.backbone} random init, embedding {args.dim}, discriminator {args.hidden}, {args.steps} "
        f"ascent steps, {size} px, batch {args.batch}, {args.threads} thread(s), CPU time, fastest of "
        f"{args.repeats}; max |ours - anomalib|: map {map_diff:.1e}, score {score_diff:.1e}",
        [
            ("train step, same LAS (one batch)", same["ours"], same["anomalib"]),
            ("train step, own LAS (one batch)", own["ours"], own["anomalib"]),
            ("inference per image", infer["ours"] / args.batch, infer["anomalib"] / args.batch),
        ],
    )


if __name__ == "__main__":
    main()
