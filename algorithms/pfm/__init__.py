"""PFM: unsupervised image anomaly detection and segmentation based on pre-trained feature mapping.

Wan, Gao, Li & Wen, IEEE Transactions on Industrial Informatics 19(3), 2023 (early access 2022),
https://doi.org/10.1109/TII.2022.3182385; official code
https://github.com/smiler96/PFM-and-PEFM-for-Image-Anomaly-Detection-and-Segmentation
(``MB-PFM-ResNet.py``, no licence file; facts in ``algorithms-next.md`` section A7).

Two frozen ImageNet CNNs, a "source" ResNet34 (S, layers 1-3: 64/128/256 channels) and a "target"
ResNet50 (T, 256/512/1024), see the same image. At each scale their features are L2-normalised
over channels, and one dual projector of 1x1 convolutions (latent 200 / 400 / 900) learns to map
S -> T and T -> S through a shared middle layer, minimising ``MSE(T, T_hat) + MSE(S, S_hat)``
with one Adam per scale (lr 3e-3 / 3e-4 / 3e-4, weight decay 1e-5; 200 epochs, batch 8, 256 px).
On normal images the mappings succeed; where they fail, the image is anomalous: the map at each
scale is ``(sum_c (T - T_hat)^2 + sum_c (S - S_hat)^2) / 2``, bilinearly upsampled, averaged over
the scales, with no Gaussian smoothing (the official code comments it out); the score is its max.
PEFM (``algorithms/pefm``) is the same model with a positional encoding added to the projector inputs.

>>> from algorithms.registry import create_algorithm
>>> model = create_algorithm("pfm", tiny=True)   # resnet18 + resnet18, random init, 32 px
"""

from ..info import AlgorithmInfo, Family, Schedule

INFO = AlgorithmInfo(
    key="pfm",
    display_name="PFM",
    family=Family.OTHER,
    paper_title="Unsupervised Image Anomaly Detection and Segmentation Based on Pretrained Feature Mapping",
    paper_url="https://doi.org/10.1109/TII.2022.3182385",
    code_url="https://github.com/smiler96/PFM-and-PEFM-for-Image-Anomaly-Detection-and-Segmentation",
    code_licence="none",
    description=(
        "Two frozen ImageNet CNNs see the same image; small 1x1-convolution projectors learn to map each "
        "network's normalised features onto the other's on normal images. Where the mapping fails, the image "
        "is anomalous."
    ),
    deviations=(
        "The per-scale Adam optimisers are one Adam with a parameter group per scale (identical updates: the "
        "scales share no parameters). The optional bn_calibration (off by default) re-estimates BatchNorm "
        "statistics of random-initialised backbones; it is not in the paper and is used only by the CPU demo."
    ),
    schedule=Schedule(
        epochs=200, batch_size=8, input_size=256, optimizer="Adam per scale, lr 3e-3 / 3e-4 / 3e-4, weight decay 1e-5"
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
    # 20 short epochs (40 steps of batch 4): the projectors' BatchNorm running statistics need
    # about that many steps before eval-mode maps are meaningful.
    tiny_epochs=20,
    demo={
        "params": {
            "input_size": 64,
            "student_backbone": "resnet18",
            "teacher_backbone": "resnet18",
            "pretrained": False,
            "bn_calibration": True,
            "latent_dims": [32, 64, 128],
        },
        "epochs": 2,
        "train_time_limit_s": 900,
        "batch_size": 16,
    },
)
