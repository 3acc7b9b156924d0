"""GLASS (Chen et al., ECCV 2024): global and local anomaly synthesis with a discriminator.

Chen, Luo, Lei, Xie, Xu, Wu, Zhou, Kong & Li, "A Unified Anomaly Synthesis Strategy with Gradient
Ascent for Industrial Anomaly Detection and Localization", ECCV 2024,
https://arxiv.org/abs/2407.09359; official code github.com/cqylunlun/GLASS (MIT) at ``f788d56``.
GLASS builds on SimpleNet (``algorithms/simplenet``). Our defaults follow its MVTec AD run
(facts: ``shared/reference/algorithms-next.md`` section B2):

1. **Features.** Frozen WideResNet-50-2 (torchvision V1 weights, ``wide_resnet50_2.tv_in1k``),
   layers 2 + 3 through PatchCore's 3 x 3 patch embedding to 1536 (as SimpleNet); input 288 px
   (resize, no crop: a 36 x 36 grid).
2. **Projection.** One Linear 1536 -> 1536, Xavier-normal; Adam lr 1e-4, weight decay 1e-5.
3. **Discriminator.** SimpleNet's (``components.discriminator``: Linear 1536 -> 1024, BatchNorm1d,
   LeakyReLU 0.2, Linear -> 1 without bias) with a sigmoid: an anomaly probability. AdamW lr 2e-4.
4. **GAS (global anomaly synthesis, paper section 3.3).** ``g = f + N(0, 0.015^2)``; 20 steps of
   normalised gradient *ascent* (step 0.001) on ``BCE(D(g), 1)``, and after every 5th a truncated
   projection: manifold, ``|g - f|`` into ``[0.5, 1]``; hypersphere, ``|g - c|`` into
   ``[r_t, 2 r_t]`` (``c`` the per-position mean feature of the training set, recomputed each
   epoch; ``r_t`` the 0.75-quantile of the normal points' distances to it).
5. **LAS (local anomaly synthesis, section 3.4).** A Perlin mask (one field, or the union or the
   intersection of two, each threshold 0.5 and rotated up to 90 degrees; optionally within the
   foreground), a texture augmented by 3 of 9 operations, blended with
   ``beta ~ N(0.5, 0.1)`` clipped to ``[0.2, 0.8]``: ``x (1 - m) + (1 - beta) t m + beta x m``.
   Feature mask: 8 x 8 max-pooling. Hypersphere mode pushes the masked points to
   ``[2 r_t, 4 r_t]`` from ``c``.
6. **Loss (eq. 12).** ``BCE(D(f), 0) + BCE(D(g), 1) + focal(D(f_L), mask)``, the focal loss
   (gamma 2, the official label smoothing 1e-5) on the half of the LAS points with the largest
   ``(D - mask)^2``.
7. **Schedule.** 640 epochs, batch 8, each epoch stopping once more than 392 images are seen.
8. **Inference.** Patch score ``D(projection(feature))``; image score the maximum; map bilinear to
   the input size, Gaussian sigma 4.
"""

from ..info import AlgorithmInfo, Family, Schedule

INFO = AlgorithmInfo(
    key="glass",
    display_name="GLASS",
    family=Family.SYNTHETIC_ANOMALIES,
    paper_title=(
        "A Unified Anomaly Synthesis Strategy with Gradient Ascent for Industrial Anomaly Detection and Localization"
    ),
    paper_url="https://arxiv.org/abs/2407.09359",
    code_url="https://github.com/cqylunlun/GLASS",
    code_licence="MIT",
    description=(
        "SimpleNet's patch features and discriminator, trained against two kinds of synthetic anomalies: global "
        "ones made in feature space by gradient ascent from Gaussian-perturbed normal features (hard negatives "
        "near the normal distribution) and local ones pasted into images as Perlin-shaped textures."
    ),
    deviations=(
        "One hyperparameter set for every category: the official code reads per category from a table whether "
        "GAS/LAS work on the manifold or the hypersphere and whether LAS masks are restricted to the foreground; "
        "here both are parameters (distribution=, foreground=) with one default for all, manifold (10 of the 15 "
        "MVTec AD categories in anomalib's table) and no foreground restriction (official fg=0). The official "
        "foreground masks are per-image files made by the authors; foreground='estimate' replaces them by a "
        "threshold on the colour distance to the image's median border colour. DTD is optional (texture_dir=); "
        "without it LAS textures are procedural colour textures (texture_fallback='procedural'; 'structure': the "
        "image itself augmented and tile-shuffled), and the nine augmentations are our torch versions of the "
        "official torchvision ones. The official code keeps the epoch with the best test-set image + pixel AUROC; "
        "we keep the last epoch. An empty foreground cannot stall the mask loop (after 50 draws the foreground is "
        "ignored). Random numbers come from seeded generators."
    ),
    schedule=Schedule(
        epochs=640,
        batch_size=8,
        input_size=288,
        optimizer=(
            "each epoch stops after 392 images; Adam lr 1e-4, wd 1e-5 (projection); AdamW lr 2e-4 (discriminator); "
            "20 gradient-ascent steps per batch"
        ),
    ),
    map_variants=("anomaly_map",),
    tiny={
        "input_size": 64,
        "backbone": "resnet18",
        "pretrained": False,
        "pretrain_embed_dim": 64,
        "target_embed_dim": 64,
        "dsc_hidden": 32,
        "ascent_steps": 2,
        "projection_interval": 1,
        "limit": 8,
    },
    tiny_epochs=1,
    # Random-initialised resnet18 at 64 px, 256-d features, 5 ascent steps, 2 epochs of 72 images
    # (limit 64): 3.3 s of CPU per category, one thread (3 epochs: 4.5 s; benchmarks/RESULTS.md,
    # GLASS section); 6 epochs scored lower on the synthetic suite than 3. The cap is a safety cap.
    demo={
        "params": {
            "input_size": 64,
            "backbone": "resnet18",
            "pretrained": False,
            "bn_calibration": True,
            "pretrain_embed_dim": 256,
            "target_embed_dim": 256,
            "dsc_hidden": 128,
            "ascent_steps": 5,
            "limit": 64,
        },
        "epochs": 2,
        "train_time_limit_s": 900,
        "batch_size": 8,
    },
)
