"""PEFM: position-encoding enhanced feature mapping for image anomaly detection.

Wan, Gao, Li & Wen, IEEE ICME 2022, https://doi.org/10.1109/ICME52920.2022.9859750; official code
https://github.com/smiler96/PFM-and-PEFM-for-Image-Anomaly-Detection-and-Segmentation
(``PEFM_AD.py``, no licence file; facts in ``algorithms-next.md`` section A7).

PFM (``algorithms/pfm``) with one change: each scale's dual projector adds a fixed 2-D sinusoidal
positional encoding (as many channels as the features, the feature grid's size) to the
L2-normalised ResNet34 (S) and ResNet50 (T) features before mapping S -> T and T -> S, so that the
mapping can depend on where a patch is (objects in MVTec AD are roughly aligned). The official
run ("small" projector) uses latent widths 200 / 400 / 800, Adam lr 3e-4 at every scale, weight
decay 1e-5, 200 epochs, batch 16, 256 px. Map and score as PFM: the mean over scales of the
halved sum of both squared mapping errors, unsmoothed; score = maximum.

>>> from algorithms.registry import create_algorithm
>>> model = create_algorithm("pefm", tiny=True)   # resnet18 + resnet18, random init, 32 px
"""

from ..info import AlgorithmInfo, Family, Schedule

INFO = AlgorithmInfo(
    key="pefm",
    display_name="PEFM",
    family=Family.OTHER,
    paper_title="Position Encoding Enhanced Feature Mapping for Image Anomaly Detection",
    paper_url="https://doi.org/10.1109/ICME52920.2022.9859750",
    code_url="https://github.com/smiler96/PFM-and-PEFM-for-Image-Anomaly-Detection-and-Segmentation",
    code_licence="none",
    description=(
        "PFM with position: two frozen ImageNet CNNs, and projectors that map each one's normalised features "
        "onto the other's after a positional encoding is added; a failed mapping marks an anomaly."
    ),
    deviations=(
        "The per-scale Adam optimisers are one Adam with a parameter group per scale (identical updates). "
        "The optional bn_calibration (off by default) re-estimates BatchNorm statistics of random-initialised "
        "backbones; it is not in the paper and is used only by the CPU demo."
    ),
    schedule=Schedule(
        epochs=200, batch_size=16, input_size=256, optimizer="Adam per scale, lr 3e-4, weight decay 1e-5"
    ),
    map_variants=("anomaly_map",),
    tiny={
        "input_size": 32,
        "student_backbone": "resnet18",
        "teacher_backbone": "resnet18",
        "pretrained": False,
        "latent_dims": [16, 32, 64],
        "lrs": [1e-2, 1e-2, 1e-2],
    },
    tiny_epochs=20,  # as PFM's: the projectors' BatchNorm running statistics need ~40 steps
    demo={
        "params": {
            "input_size": 64,
            "student_backbone": "resnet18",
            "teacher_backbone": "resnet18",
            "pretrained": False,
            "bn_calibration": True,
            "latent_dims": [32, 64, 128],
            "lrs": [3e-3, 3e-3, 3e-3],
        },
        "epochs": 2,
        "train_time_limit_s": 900,
        "batch_size": 16,
    },
)
