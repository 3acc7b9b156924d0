"""Reverse Distillation: anomaly detection via reverse distillation from one-class embedding.

Deng & Li, CVPR 2022, https://arxiv.org/abs/2201.10703.

A frozen ImageNet teacher encoder (``wide_resnet50_2``, layers 1-3) describes the image at three
scales. A trainable one-class bottleneck embedding (OCBE: multi-scale fusion + ResNet blocks)
compresses them, and a trainable student decoder mirroring the encoder (de-ResNet) reconstructs
the teacher's features from that embedding. Trained on normal images only (Adam, lr 0.005, betas
(0.5, 0.999), 200 epochs, batch 16, 256 px) to minimise the cosine distance between teacher and
student features, the student fails to reproduce anomalous regions. The anomaly map is the sum
over scales of the per-pixel cosine distance, upsampled and smoothed (Gaussian sigma 4); the
image score is its maximum.

>>> from algorithms.registry import create_algorithm
>>> model = create_algorithm("reverse_distillation", tiny=True)   # resnet18, random init, 64 px
"""

from .detector import PAPER_SCHEDULE, ReverseDistillation

__all__ = ["PAPER_SCHEDULE", "ReverseDistillation"]
