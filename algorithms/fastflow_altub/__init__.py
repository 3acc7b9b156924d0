"""FastFlow + AltUB: alternating training to update the base distribution of a normalising flow.

Kim, Jeong, Lee, Kim & Song (2022), https://arxiv.org/abs/2210.14913 (no official code; the
VisionAD benchmark's own implementation, ``algorithms-next.md`` section A3, ``visionad.md`` 4.1).

FastFlow (``algorithms/fastflow``, used unchanged: frozen CNN, LayerNorm, one 2-D flow per scale)
maps normal features to a base distribution; AltUB makes that base learnable: a per-channel mean
``mu`` and log-standard-deviation ``log sigma`` per scale, so the NLL becomes
``0.5 sum ((z - mu) / sigma)^2 + sum log sigma - log|det J|``. Training alternates: every 5th step
updates only ``mu`` and ``log sigma`` (Adam, lr 0.05), the other steps the flows and the base
(Adam, lr 1e-3, weight decay 1e-5, VisionAD's variant); gradients are norm-clipped at 100. The
anomaly map is FastFlow's, computed on the standardised latents ``(z - mu) / sigma``.

>>> from algorithms.registry import create_algorithm
>>> model = create_algorithm("fastflow_altub", tiny=True)   # FastFlow's tiny config, base step every 2nd step
"""

from ..fastflow import INFO as FASTFLOW_INFO
from ..info import AlgorithmInfo, Family, Schedule

INFO = AlgorithmInfo(
    key="fastflow_altub",
    display_name="FastFlow + AltUB",
    family=Family.NORMALIZING_FLOW,
    paper_title=(
        "AltUB: Alternating Training Method to Update Base Distribution of Normalizing Flow for Anomaly Detection"
    ),
    paper_url="https://arxiv.org/abs/2210.14913",
    code_url="",
    code_licence="none",
    description=(
        "FastFlow whose target distribution is learned too: a per-channel Gaussian updated on its own, with a "
        "larger learning rate, every few steps; pixels unlikely under the learned distribution are anomalous."
    ),
    deviations=(
        "The authors released no code; we follow the VisionAD benchmark's implementation (base step every 5th "
        "step at lr 0.05, the base also updated with the flows at lr 1e-3, gradient-norm clip 100). The base "
        "step's optimiser is Adam without weight decay (the optimiser type is not stated). FastFlow's own "
        "deviations apply."
    ),
    schedule=Schedule(
        epochs=FASTFLOW_INFO.schedule.length,
        batch_size=FASTFLOW_INFO.schedule.batch_size,
        input_size=FASTFLOW_INFO.schedule.input_size,
        optimizer="Adam lr 1e-3, wd 1e-5 on flows + base; every 5th step Adam lr 0.05 on the base only; clip 100",
    ),
    map_variants=FASTFLOW_INFO.map_variants,
    tiny={**FASTFLOW_INFO.tiny, "alt_interval": 2},
    tiny_epochs=max(FASTFLOW_INFO.tiny_epochs, 2),
    demo={**FASTFLOW_INFO.demo},
)
