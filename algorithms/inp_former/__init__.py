"""INP-Former (Luo, Cao, Yao, Zhang, Lou, Cheng, Shen & Yu, CVPR 2025): intrinsic normal prototypes.

"Exploring Intrinsic Normal Prototypes within a Single Image for Universal Anomaly Detection",
https://arxiv.org/abs/2503.02424, official code https://github.com/luow23/INP-Former (MIT), built on
Dinomaly's code. Our defaults are the official class-separated script (``INP_Former_Single_Class.py``):

1. **Encoder.** A frozen DINOv2 ViT-B/14 with 4 registers (``vit_base_patch14_reg4_dinov2.lvd142m``);
   the raw outputs of blocks 2-9 (0-based), class and register tokens removed
   (``remove_class_token=True``); their mean ``F`` (``(B, 784, 768)`` at 392 px).
2. **INP Extractor.** ``M = 6`` learnable queries (standard-normal init) cross-attend ``F`` in one
   transformer block (softmax attention, one LayerNorm shared by queries and tokens, MLP ratio 4):
   the image's own Intrinsic Normal Prototypes ``P`` (``(B, 6, 768)``).
3. **INP Coherence Loss.** ``L_c = mean_i min_m (1 - cos(F_i, P_m))``: each token pulled towards its
   nearest INP, so that the INPs describe the image's normal content.
4. **Bottleneck.** Linear(768, 3072) -> GELU -> Linear(3072, 768) on ``F`` (dropout 0 in the official
   script, unlike Dinomaly's noisy bottleneck).
5. **INP-Guided Decoder.** 8 blocks: attention with the patch tokens as queries and the INPs as keys
   and values, ``ReLU(s_h cos(q, k)) v`` (L2-normalised q and k, a learnable scale per head, no
   softmax), **no residual connection around the attention** (the output lies in the span of the
   INPs), then a residual MLP.
6. **Loose reconstruction and Soft Mining Loss.** Dinomaly's groups (encoder taps 0-3 / 4-7 against
   the reversed decoder outputs 0-3 / 4-7) and its global cosine, but every point's gradient is
   weighted by ``(d / mean d)^3`` (``d`` its channel-wise ``1 - cos``) instead of hard mining.
   Total loss ``L_sm + 0.2 L_c``.
7. **Optimiser.** StableAdamW (``algorithms.components.optim``), lr 1e-3, betas (0.9, 0.999), weight
   decay 1e-4, AMSGrad, eps 1e-10; warm-up 0 -> 1e-3 over 100 iterations, then cosine to 1e-4 at
   200 epochs; gradient-norm clipping 0.1; batch 16. Linear weights trunc-normal(0.01) cut at +-0.03,
   zero biases, unit LayerNorms; the attention scales at 1 and the INP queries standard normal.
8. **Inference.** As Dinomaly: per group the channel-wise ``1 - cos`` at 28 x 28, bilinear
   (align_corners) to the input size, mean of the groups; bilinear to 256; a 5 x 5 Gaussian (sigma
   4, zero padding); image score = the mean of the top 1 % of that map.

A random-initialised encoder gives features with no notion of "normal"; the tiny and demo
configurations only exercise the code path.

>>> from algorithms.registry import create_algorithm
>>> model = create_algorithm("inp_former", tiny=True)   # 5-block 32-wide random ViT, 56 px
"""

from ..info import AlgorithmInfo, Family, Schedule

INFO = AlgorithmInfo(
    key="inp_former",
    display_name="INP-Former",
    family=Family.RECONSTRUCTION,
    paper_title="Exploring Intrinsic Normal Prototypes within a Single Image for Universal Anomaly Detection",
    paper_url="https://arxiv.org/abs/2503.02424",
    code_url="https://github.com/luow23/INP-Former",
    code_licence="MIT",
    description=(
        "Learnable queries extract a few intrinsic normal prototypes from each image's own frozen DINOv2 "
        "features; a decoder that can only combine those prototypes reconstructs the features, so anomalous "
        "regions, absent from the prototypes, are reconstructed badly and stand out by cosine distance."
    ),
    deviations=(
        "Evaluated on the full image: the inputs are resized to 392 x 392 (no 448 -> 392 centre crop of "
        "images and masks as in the official scripts, whose pixel metrics therefore ignore the border). "
        "The encoder's positional embedding is resampled once by timm (bicubic, antialiased) rather than by "
        "DINOv2's per-call interpolation. The last training batch of an epoch is kept even when incomplete "
        "(the official loader drops it); the cosine schedule spans 200 epochs times the number of batches "
        "of our loader. The last epoch is evaluated (as in the official script)."
    ),
    schedule=Schedule(
        epochs=200,
        batch_size=16,
        input_size=392,
        optimizer=(
            "StableAdamW, lr 1e-3 (warm-up 100 iterations, cosine to 1e-4), betas (0.9, 0.999), wd 1e-4, "
            "AMSGrad, eps 1e-10, clip 0.1"
        ),
    ),
    map_variants=("anomaly_map",),
    tiny={
        "input_size": 56,
        "pretrained": False,
        "backbone": "vit_small_patch14_reg4_dinov2.lvd142m",
        "model_kwargs": {"depth": 5, "embed_dim": 32, "num_heads": 2},
        "target_layers": [1, 2, 3, 4],
        "fuse_layer_encoder": [[0, 1], [2, 3]],
        "fuse_layer_decoder": [[0, 1], [2, 3]],
        "decoder_depth": 4,
        "warmup_iters": 0,
        "epochs": 1,
        "map_size": None,
    },
    tiny_epochs=1,
    demo={
        "params": {
            "input_size": 64,
            "pretrained": False,
            "backbone": "vit_small_patch14_reg4_dinov2.lvd142m",
            "model_kwargs": {"depth": 5, "embed_dim": 32, "num_heads": 2, "patch_size": 8},
            "target_layers": [1, 2, 3, 4],
            "fuse_layer_encoder": [[0, 1], [2, 3]],
            "fuse_layer_decoder": [[0, 1], [2, 3]],
            "decoder_depth": 4,
            "warmup_iters": 5,
            "epochs": 3,
            "map_size": None,
        },
        "epochs": 3,
        "train_time_limit_s": 900,
        "batch_size": 8,
    },
)
