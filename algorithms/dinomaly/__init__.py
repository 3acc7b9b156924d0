"""Dinomaly (Guo, Lu, Zhang, Chen, Li & Liao, CVPR 2025): loose reconstruction of DINOv2 features.

"Dinomaly: The Less Is More Philosophy in Multi-Class Unsupervised Anomaly Detection",
https://arxiv.org/abs/2405.14325, official code https://github.com/guojiajeremy/Dinomaly
(Apache-2.0). Our defaults are the official class-separated scripts (``dinomaly_mvtec_sep.py``):

1. **Encoder.** A frozen DINOv2 ViT-B/14 with 4 registers (``vit_base_patch14_reg4_dinov2.lvd142m``);
   the raw outputs of blocks 2-9 (0-based, 8 middle blocks), every token (class, registers, patches).
2. **Noisy bottleneck.** The mean of those 8 token sequences through Dropout(0.2) -> Linear(768,
   3072) -> GELU -> Dropout -> Linear(3072, 768) -> Dropout (paper sec. 3.2: dropout as the noise).
3. **Decoder.** 8 pre-norm ViT blocks (768 wide, 12 heads, MLP ratio 4, LayerNorm eps 1e-8) with
   **linear attention** ``phi(q)(phi(k)^T v) / (phi(q) . sum phi(k))``, ``phi = elu + 1`` (sec. 3.3:
   attention that "cannot focus").
4. **Loose reconstruction** (sec. 3.4). Group 1 = the mean of encoder taps 0-3 (blocks 2-5) against
   the mean of the last 4 decoder blocks; group 2 = taps 4-7 (blocks 6-9) against the first 4.
   Loss: per group ``1 - cos`` between the whole flattened encoder and decoder maps of each image,
   averaged over images and groups; **hard mining**: the gradient of the points whose channel-wise
   distance lies below the batch's ``(1 - p)`` top quantile is multiplied by 0.1, ``p`` ramping
   linearly from 0 to 0.9 over the first 1000 iterations.
5. **Optimiser.** StableAdamW (``algorithms.components.optim``), lr 2e-3, betas (0.9, 0.999), weight
   decay 1e-4, AMSGrad, eps 1e-8; the lr warms up linearly from 0 over 100 iterations, then follows
   a cosine to 2e-4 at 5000 iterations; gradient-norm clipping 0.1; batch 16. Trainable weights:
   trunc-normal(0.01) cut at +-0.03, zero biases.
6. **Inference.** Per group the channel-wise ``1 - cos`` at 28 x 28, bilinear (align_corners) to the
   input size, mean of the groups; bilinear to 256; a 5 x 5 Gaussian (sigma 4, zero padding); image
   score = the mean of the top 1 % of that 256 x 256 map.

Published (class-separated, anomalib's README, 5000 iterations): MVTec AD I-AUROC 99.7, P-AUROC 98.4.
A random-initialised encoder gives features with no notion of "normal" (the reference notes say
so); the tiny and demo configurations only exercise the code path.

>>> from algorithms.registry import create_algorithm
>>> model = create_algorithm("dinomaly", tiny=True)   # 5-block 32-wide random ViT, 56 px
"""

from ..info import AlgorithmInfo, Family, Schedule

INFO = AlgorithmInfo(
    key="dinomaly",
    display_name="Dinomaly",
    family=Family.RECONSTRUCTION,
    paper_title="Dinomaly: The Less Is More Philosophy in Multi-Class Unsupervised Anomaly Detection",
    paper_url="https://arxiv.org/abs/2405.14325",
    code_url="https://github.com/guojiajeremy/Dinomaly",
    code_licence="Apache-2.0",
    description=(
        "A linear-attention transformer decoder reconstructs the middle-layer features of a frozen DINOv2 "
        "encoder from a dropout-noised bottleneck, loosely (grouped layers, easy points down-weighted); "
        "anomalies are where the cosine distance between the two is large."
    ),
    deviations=(
        "Evaluated on the full image: the inputs are resized to 392 x 392 (no 448 -> 392 centre crop of "
        "images and masks as in the official scripts, whose pixel metrics therefore ignore the border). "
        "The encoder's positional embedding is resampled once by timm (bicubic, antialiased) rather than by "
        "DINOv2's per-call interpolation. The last iteration is evaluated (the official script evaluates at "
        "the last of its 5000 iterations too)."
    ),
    schedule=Schedule(
        iterations=5000,
        batch_size=16,
        input_size=392,
        optimizer="StableAdamW, lr 2e-3 (warm-up 100, cosine to 2e-4), betas (0.9, 0.999), wd 1e-4, AMSGrad, clip 0.1",
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
        "total_iters": 4,
        "lr": 0.01,
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
            "total_iters": 30,
            "hard_mining_ramp": 20,
            "map_size": None,
        },
        "iterations": 30,
        "train_time_limit_s": 900,
        "batch_size": 8,
    },
)
