"""MemSeg (Yang et al., 2022): memory of normal features, image-level synthetic anomalies, segmentation.

Yang, Chen, Yang & Zhou, "MemSeg: A semi-supervised method for image surface defect detection
using differences and commonalities", 2022, https://arxiv.org/abs/2205.00908. No official code;
VisionAD used the unofficial github.com/TooTouch/MemSeg (MIT, @ 836bd46), whose choices fill what
the paper leaves open (facts: ``shared/reference/algorithms-next.md`` section A10):

1. **Backbone.** timm ResNet-18 (``resnet18.tv_in1k``); stem and layers 1-3 frozen, layer 4
   trained with the heads (paper section 3.3).
2. **Synthetic anomalies (training).** Every training image gets a Perlin mask (threshold 0.5,
   random rotation; ``components.perlin``) filled with a texture blended at a factor
   ``U(0.15, 1)``: a DTD image (``texture_dir=``, augmented) or, with probability 1/2 or always
   without DTD, the "structure" source: the image itself augmented and cut into 8 x 8 shuffled
   tiles (``components.texture``).
3. **Memory module.** Layer 1-3 features of 30 random normal training images. An input takes
   the memory sample with the smallest summed mean squared difference and is concatenated, per
   level, with its squared difference to it (channels 128 / 256 / 512).
4. **MSFF.** Per level ``Conv3x3 * CoordAttention -> Conv3x3 (C -> C/2) -> Conv3x3``, top-down
   ``up2 + Conv3x3`` addition, times a spatial attention (channel mean of the difference half,
   multiplied top-down).
5. **Decoder.** U-Net of ``Upsample + Conv3x3 + BN + ReLU`` blocks from layer 4 with the fused
   levels and the stem as skips; a Conv3x3 to two logits at the input resolution.
6. **Loss.** ``0.6 L1(softmax_1, mask) + 0.4 focal(gamma 4)``; AdamW lr 3e-3, wd 5e-4, batch 8,
   5000 steps, 10 % linear warm-up from 1e-4 then cosine to 1e-4.
7. **Inference.** Map: softmax anomaly probability at the input size; score: mean of its 100
   largest values (``components.scores.topk_mean``).
"""

from ..info import AlgorithmInfo, Family, Schedule

INFO = AlgorithmInfo(
    key="memseg",
    display_name="MemSeg",
    family=Family.SYNTHETIC_ANOMALIES,
    paper_title=(
        "MemSeg: A semi-supervised method for image surface defect detection using differences and commonalities"
    ),
    paper_url="https://arxiv.org/abs/2205.00908",
    code_url="https://github.com/TooTouch/MemSeg",
    code_licence="MIT",
    description=(
        "A partly trainable ResNet-18 sees normal images with pasted Perlin-shaped textures; its features are "
        "concatenated with their differences to the nearest of 30 stored normal images, fused with coordinate and "
        "spatial attention, and a U-Net decoder segments the synthetic defects."
    ),
    deviations=(
        "No official code: architecture details follow the unofficial TooTouch/MemSeg that VisionAD used. DTD is "
        "optional (texture_dir=); without it every synthetic anomaly uses the paper's second source, the "
        "'structure' texture (the image itself, augmented, 8x8 tiles shuffled), and augmentations are our "
        "torch ones instead of imgaug's. The per-class foreground-mask list of that code is not used (one "
        "hyperparameter set for every category: masks are not restricted to the object). The frozen stages keep "
        "their BatchNorm statistics (the reference code lets them drift in training mode). The focal loss is "
        "computed on the logit difference (equal to the two-class softmax focal loss, numerically stable). "
        "Images are resized straight to the input size (no 288 -> 256 crop): the harness's preprocessing."
    ),
    schedule=Schedule(
        iterations=5000,
        batch_size=8,
        input_size=256,
        optimizer="AdamW lr 3e-3, wd 5e-4; 10 % linear warm-up from 1e-4, cosine to 1e-4",
    ),
    map_variants=("anomaly_map",),
    tiny={
        "input_size": 64,
        "backbone": "resnet18",
        "pretrained": False,
        "memory_samples": 4,
        "top_k": 10,
        "steps": 2,
        "warmup_steps": 0,
    },
    tiny_epochs=1,
    demo={
        "params": {
            "input_size": 64,
            "backbone": "resnet18",
            "pretrained": False,
            "bn_calibration": True,
            "memory_samples": 10,
            "top_k": 25,
            "steps": 30,
            "warmup_steps": 3,
        },
        "iterations": 30,
        "train_time_limit_s": 900,
        "batch_size": 8,
    },
)
