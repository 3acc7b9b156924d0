"""FastFlow: unsupervised anomaly detection and localisation via 2-D normalising flows.

Yu, Zheng, Chen, Wu, Wu, Wu & Zhang (2021), https://arxiv.org/abs/2111.07677.

A frozen ImageNet CNN (``wide_resnet50_2``, layers 1-3) gives features at three scales; each is
normalised by a trainable LayerNorm and mapped by its own 2-D normalising flow (8 affine coupling
steps whose subnets alternate 3x3 and 1x1 convolutions, hidden ratio 1.0, clamp 2.0) towards a
standard normal. Training minimises the negative log-likelihood (Adam, lr 1e-3, weight decay
1e-5, 500 epochs, batch 32, 256 px). The anomaly map is one minus the per-pixel likelihood
``exp(-0.5 * mean_c z**2)``, averaged over the scales; the score is its maximum.

>>> from algorithms.registry import create_algorithm
>>> model = create_algorithm("fastflow", tiny=True)   # resnet18, random init, 64 px
"""

from .detector import PAPER_SCHEDULE, Fastflow

__all__ = ["PAPER_SCHEDULE", "Fastflow"]
