"""AnomalyDINO (Damm, Laszkiewicz, Lederer & Fischer, WACV 2025): a DINOv2 patch-token memory bank.

"AnomalyDINO: Boosting Patch-based Few-shot Anomaly Detection with DINOv2",
https://arxiv.org/abs/2405.14529, official code https://github.com/dammsi/AnomalyDINO (no licence
file). Training-free, in the patch-level deep-nearest-neighbour family (SPADE, PatchCore):

1. **Features.** A frozen DINOv2 ViT-S/14 (``vit_small_patch14_dinov2.lvd142m``; the official
   ``dinov2_vits14`` from torch.hub, without registers). The patch tokens of the **last** block
   after the final LayerNorm (DINOv2's ``get_intermediate_layers(x, n=1)``), class token dropped;
   at 448 px a 32 x 32 grid of 384-d tokens. Official resolution: the smaller image edge resized
   to 448 (``--resolution 448``), ImageNet normalisation; our inputs are square ``input_size``.
2. **Memory bank.** Every patch token of every reference (training) image, L2-normalised (the
   full-shot setting, ``--shots -1``). No coreset subsampling (the paper uses none).
   Optional augmentation (official ``rotation``): each reference image is also added rotated by
   45, 90, ..., 315 degrees (8 views; bilinear, reflected border, as cv2's ``warpAffine`` with
   ``BORDER_DEFAULT`` in the official ``augment_image``).
3. **Scoring.** Patch distance = cosine distance ``1 - <x, m>/(|x||m|)`` to the nearest bank
   token (official: faiss L2 on normalised vectors, halved, which is the same number; ``k > 1``
   averages the ``k`` nearest). Image score = the mean of the 1 % largest patch distances
   (``int(0.01 n)`` patches, the maximum when that is 0: ``mean_top1p`` of ``src/post_eval.py``,
   the paper's "empirical tail value at risk", sec. 3.1). Anomaly map = the patch distances,
   resized bilinearly to the input size and smoothed with a Gaussian of sigma 4 (``dists2map``).
4. **Optional zero-shot masking** (official ``masking``): per **test** image, the first principal
   component of its patch tokens thresholded at 10, flipped if the centre crop (20 % border
   dropped) keeps at most 35 % of its patches, then a 3 x 3 dilation and a 3 x 3 closing;
   masked-out patches get distance 0 (they still count in the top-1 % mean). Reference images
   are not masked (the official default, ``mask_ref_images=False``; the authors confirm this is
   intended, dammsi/AnomalyDINO issue 7).

The official code picks masking and rotation **per category** from a table (``get_dataset_info``:
"agnostic", its README default, rotates every category and masks capsule, hazelnut, pill, screw
and toothbrush on MVTec AD and every VisA category). A leaderboard runs one hyperparameter set for
every category, so both are single switches here, off by default: masking is off for 10 of the 15
MVTec categories, and rotation is a few-shot device (the "masking_only" preset turns it off) that
multiplies the full-shot memory bank by 8.

>>> from algorithms.registry import create_algorithm
>>> model = create_algorithm("anomaly_dino", tiny=True)   # 2-block random-init ViT, 56 px
"""

from ..info import AlgorithmInfo, Family, Schedule

INFO = AlgorithmInfo(
    key="anomaly_dino",
    display_name="AnomalyDINO",
    family=Family.MEMORY_BANK,
    paper_title="AnomalyDINO: Boosting Patch-based Few-shot Anomaly Detection with DINOv2",
    paper_url="https://arxiv.org/abs/2405.14529",
    code_url="https://github.com/dammsi/AnomalyDINO",
    code_licence="none",
    description=(
        "Every patch token of a frozen DINOv2 ViT-S/14 over the normal images forms a memory bank; a test "
        "patch's anomaly is its cosine distance to the nearest bank token, the image score the mean of "
        "its 1 % most distant patches."
    ),
    deviations=(
        "Square inputs of input_size (448) instead of the smaller edge resized to 448 with the aspect ratio "
        "kept. Masking and rotation augmentation are one setting for every category (both off by default) "
        "instead of the official per-category table. Positional embeddings are resampled once by timm "
        "(bicubic, antialiased) rather than by DINOv2's own per-call interpolation. Rotations are applied to "
        "the normalised input tensor (bilinear, reflected border) rather than to the 8-bit image before "
        "resizing."
    ),
    schedule=Schedule(
        epochs=1, batch_size=8, input_size=448, optimizer="none: one pass over the training images builds the bank"
    ),
    map_variants=("anomaly_map",),
    one_shot=True,
    tiny={
        "input_size": 56,
        "pretrained": False,
        "model_kwargs": {"depth": 2, "embed_dim": 32, "num_heads": 2},
    },
    demo={
        "params": {
            "input_size": 80,
            "pretrained": False,
            "model_kwargs": {"depth": 2, "embed_dim": 32, "num_heads": 2, "patch_size": 8},
        },
        "epochs": 1,
        "train_time_limit_s": 900,
        "batch_size": 16,
    },
)
