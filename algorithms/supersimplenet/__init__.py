"""SuperSimpleNet (Rolih, Fučka & Skočaj, ICPR 2024): Perlin-masked feature noise, segmentation and detection heads.

Rolih, Fučka & Skočaj, "SuperSimpleNet: Unifying Unsupervised and Supervised Learning for Fast
and Reliable Surface Defect Detection", ICPR 2024, https://arxiv.org/abs/2408.03143; official code
github.com/blaz-r/SuperSimpleNet (MIT). Extended in JIMS 2025 ("No label left behind"). Our
defaults are the ICPR paper's unsupervised MVTec AD settings and its official code:

1. **Features.** Frozen WideResNet-50-2 (torchvision V1 weights, ``wide_resnet50_2.tv_in1k``),
   layers 2 and 3, both bilinearly upsampled (``align_corners=True``) to twice the layer-2 grid
   (64 x 64 at 256 px), concatenated (1536 channels), 3 x 3 average pooling (stride 1, pad 1).
2. **Feature adaptor.** A 1 x 1 convolution 1536 -> 1536 (Xavier-normal).
3. **Synthetic anomalies (training).** The batch is duplicated; per item a Perlin mask at the
   feature resolution (``components.perlin``, threshold ``perlin_threshold``: 0.2 on MVTec AD, 0.6
   on VisA), emptied with probability 0.5; inside the mask the adapted features get
   ``N(0, 0.015^2)`` noise; the item's label is 1 when its mask is non-empty.
4. **Heads.** Segmentation: ``Conv1x1(1536, 1024) -> BN -> LeakyReLU(0.2) -> Conv1x1(1024, 1, no
   bias)``: an anomaly logit map. Classification: ``Conv5x5(1536 + 1, 128) -> BN -> ReLU`` on
   [features | detached map], global max and mean of that, global max and mean of the (detached)
   map, ``Linear(258, 1)``: an anomaly logit. ICPR feeds the classification branch the adapted
   features; JIMS (anomalib's default) the unadapted ones: ``adapt_cls_features``.
5. **Loss.** ``focal(gamma 4)(map, mask) + truncated L1(map, mask, 0.5) + focal(gamma 4)(score,
   label)`` (``components.losses``).
6. **Optimiser.** AdamW: adaptor lr 1e-4 (weight decay 0.01), both heads lr 2e-4 (weight decay
   1e-5); MultiStepLR x0.4 at 80 % and 90 % of 300 epochs; batch 32.
7. **Inference.** Map: the segmentation logits bilinearly upsampled to the input size, Gaussian
   blur sigma 4 (kernel 25). Score: the classification logit (the official code reports its
   sigmoid: the same ranking; the logit does not saturate to 1.0 in float32).
"""

from ..info import AlgorithmInfo, Family, Schedule

INFO = AlgorithmInfo(
    key="supersimplenet",
    display_name="SuperSimpleNet",
    family=Family.SYNTHETIC_ANOMALIES,
    paper_title=(
        "SuperSimpleNet: Unifying Unsupervised and Supervised Learning for Fast and Reliable Surface Defect Detection"
    ),
    paper_url="https://arxiv.org/abs/2408.03143",
    code_url="https://github.com/blaz-r/SuperSimpleNet",
    code_licence="MIT",
    description=(
        "Upsampled features of a frozen CNN pass a 1x1 adaptor; Gaussian noise inside random Perlin-shaped "
        "regions makes synthetic anomalies, and a segmentation head (the anomaly map) and a classification head "
        "(the score) learn to find them."
    ),
    deviations=(
        "None in the default configuration (the ICPR 2024 paper's MVTec AD settings, perlin_threshold 0.2; use 0.6 "
        "for VisA). The Perlin masks and feature noise come from our seeded generators. The official code's "
        "focal loss takes probabilities; ours takes logits (the same loss, numerically stable). The image score is "
        "the classification logit, not its sigmoid (same ranking; the sigmoid saturates to 1.0 in float32)."
    ),
    schedule=Schedule(
        epochs=300,
        batch_size=32,
        input_size=256,
        optimizer="AdamW: adaptor lr 1e-4, heads lr 2e-4 wd 1e-5; MultiStepLR x0.4 at 80 % and 90 %",
    ),
    map_variants=("anomaly_map",),
    tiny={
        "input_size": 64,
        "backbone": "resnet18",
        "pretrained": False,
        "seg_hidden": 32,
        "cls_hidden": 16,
        "epochs": 2,
    },
    tiny_epochs=2,
    # Random-initialised features: larger feature noise than the publication's 0.015 (see
    # SimpleNet's demo note); 64 px and narrow heads for the demo budget.
    demo={
        "params": {
            "input_size": 64,
            "backbone": "resnet18",
            "pretrained": False,
            "bn_calibration": True,
            "noise_std": 0.1,
            "seg_hidden": 64,
            "cls_hidden": 16,
            "epochs": 3,
        },
        "epochs": 3,
        "train_time_limit_s": 900,
        "batch_size": 8,
    },
)
