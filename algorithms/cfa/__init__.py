"""CFA: coupled-hypersphere-based feature adaptation for target-oriented anomaly localisation.

Lee, Lee & Song, IEEE Access 10 (2022), https://arxiv.org/abs/2206.04325; official code
https://github.com/sungwool/CFA_for_anomaly_localization (no licence file; facts in
``algorithms-next.md`` section A6).

A frozen ImageNet CNN (``wide_resnet50_2``, layers 1-3) gives patch features: each map 3x3
average-pooled, resized to the layer-1 grid and concatenated (1792 channels). A trainable patch
descriptor, one CoordConv 1x1 layer (the features plus two coordinate channels), adapts them to
the target data set. Before training, the untrained descriptor's mean map over the training
images gives one centroid per feature-map position (the memory, frozen). Training pulls every
patch descriptor inside a hypersphere of learnable radius ``r`` around its K = 3 nearest centroids
and pushes the next J = 3 (hard negatives) out beyond ``r^2 + alpha`` (soft boundary,
``1/nu = 1000``, ``alpha = 0.1``; AdamW lr 1e-3, weight decay 5e-4, amsgrad; 30 epochs, batch 4).
At test time a patch scores ``softmin(d)_1 * d_1`` over its 3 nearest centroid distances; the map
is upsampled bilinearly and smoothed (Gaussian, sigma 4); the image score is its maximum.

>>> from algorithms.registry import create_algorithm
>>> model = create_algorithm("cfa", tiny=True)   # resnet18, random init, 64 px
"""

from ..info import AlgorithmInfo, Family, Schedule

INFO = AlgorithmInfo(
    key="cfa",
    display_name="CFA",
    family=Family.MEMORY_BANK,
    paper_title="CFA: Coupled-Hypersphere-Based Feature Adaptation for Target-Oriented Anomaly Localization",
    paper_url="https://arxiv.org/abs/2206.04325",
    code_url="https://github.com/sungwool/CFA_for_anomaly_localization",
    code_licence="none",
    description=(
        "Patch features of a frozen ImageNet CNN are adapted by a small trainable descriptor so that normal "
        "patches fall inside small hyperspheres around memorised centroids; a patch far from every centroid "
        "is anomalous."
    ),
    deviations=(
        "Input resized to 256 px without the official 224 px centre crop (the crop hides the image border; "
        "VisionAD also used 256). The memory compression by K-means (gamma_c > 1, off by default) is not "
        "implemented. Squared distances below 0 (rounding) count as 0 in the scores. The official "
        "code min-max rescales maps over the whole test set; we return raw per-image maps (a monotone "
        "difference for AUROC). The optional bn_calibration (off by default) re-estimates BatchNorm statistics "
        "of random-initialised backbones; it is not in the paper and is used only by the CPU demo."
    ),
    schedule=Schedule(epochs=30, batch_size=4, input_size=256, optimizer="AdamW, lr 1e-3, weight decay 5e-4, amsgrad"),
    map_variants=("anomaly_map",),
    tiny={"input_size": 64, "backbone": "resnet18", "pretrained": False},
    tiny_epochs=2,
    demo={
        "params": {"input_size": 96, "backbone": "resnet18", "pretrained": False, "bn_calibration": True},
        "epochs": 1,
        "train_time_limit_s": 900,
        "batch_size": 8,
    },
)
