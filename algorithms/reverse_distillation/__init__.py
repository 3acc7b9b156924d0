"""Reverse Distillation: anomaly detection via reverse distillation from one-class embedding.

Deng & Li, CVPR 2022, https://arxiv.org/abs/2201.10703.

A frozen ImageNet teacher encoder (``wide_resnet50_2``, layers 1-3) describes the image at three
scales. A trainable one-class bottleneck embedding (OCBE: multi-scale fusion + ResNet blocks)
compresses them, and a trainable student decoder mirroring the encoder (de-ResNet) reconstructs
the teacher's features from that embedding. Trained on normal images only (Adam, lr 0.005, betas
(0.5, 0.999), 200 epochs, batch 16, 256 px) to minimise the cosine distance between teacher and
student features, the student fails to reproduce anomalous regions. The anomaly map is the sum
over scales of the per-pixel cosine distance, upsampled and smoothed (Gaussian sigma 4, as the
official code's ``scipy.ndimage.gaussian_filter``); the image score is its maximum.

>>> from algorithms.registry import create_algorithm
>>> model = create_algorithm("reverse_distillation", tiny=True)   # resnet18, random init, 64 px
"""

from ..info import AlgorithmInfo, Family, Schedule

INFO = AlgorithmInfo(
    key="reverse_distillation",
    display_name="Reverse Distillation",
    family=Family.KNOWLEDGE_DISTILLATION,
    paper_title="Anomaly Detection via Reverse Distillation from One-Class Embedding",
    paper_url="https://arxiv.org/abs/2201.10703",
    code_url="https://github.com/hq-deng/RD4AD",
    code_licence="MIT",
    description=(
        "A trainable decoder reconstructs a frozen encoder's multi-scale features from a compact one-class "
        "embedding; where the reconstruction disagrees (cosine distance), the image is anomalous."
    ),
    deviations=(
        "The default encoder weights are timm's wide_resnet50_2 weights; the publication used torchvision's "
        "(pass backbone='wide_resnet50_2.tv_in1k' for those). "
        "Fixed to the official code: the map is smoothed exactly as scipy.ndimage.gaussian_filter(sigma=4) "
        "(half-sample symmetric border; it was torch-reflect padding, up to 0.017 different within 16 px of the edge). "
        "anomalib 2.7 departs from the official code (a non-wide OCBE at wide_resnet50_2, Adam betas (0.5, 0.99), "
        "torch-reflect smoothing border); ours follows the official code there (tests/test_anomalib_peers.py)."
    ),
    schedule=Schedule(
        epochs=200, batch_size=16, input_size=256, optimizer="Adam, lr 0.005, betas (0.5, 0.999)"
    ),
    map_variants=("anomaly_map",),
    tiny={
        "input_size": 64,
        "backbone": "resnet18",
        "pretrained": False,
        "bottleneck_blocks": 1,
        "decoder_blocks": [1, 1, 1],
    },
    tiny_epochs=1,
    demo={
        "params": {
            "input_size": 96,
            "backbone": "resnet18",
            "pretrained": False,
            "bottleneck_blocks": 1,
            "decoder_blocks": [1, 1, 1],
        },
        # A fixed schedule sized for the CPU demo's budget (every algorithm on the 9 synthetic
        # categories within ~12 minutes on 2 idle cores; 96 px since 22 methods share it: one
        # category's train + predict, one thread, benchmarks/RESULTS.md "Demo"); the wall-clock cap
        # is a safety cap only.
        "epochs": 2,
        "train_time_limit_s": 900,
        "batch_size": 8,
    },
)
