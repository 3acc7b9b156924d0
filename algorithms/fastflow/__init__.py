"""FastFlow: unsupervised anomaly detection and localisation via 2-D normalising flows.

Yu, Zheng, Chen, Wu, Wu, Wu & Zhang (2021), https://arxiv.org/abs/2111.07677.

A frozen ImageNet CNN (``wide_resnet50_2``, layers 1-3) gives features at three scales; each is
normalised by a trainable LayerNorm and mapped by its own 2-D normalising flow (8 affine coupling
steps whose subnets alternate 3x3 and 1x1 convolutions, hidden ratio 1.0, clamp 2.0; FrEIA's
all-in-one block as in the code the field uses) towards a standard normal. Training minimises
the negative log-likelihood, summed over the scales (Adam, lr 1e-3, weight decay 1e-5, 500
epochs, batch 32, 256 px). The anomaly map is one minus the per-pixel likelihood
``exp(-0.5 * mean_c z**2)``, averaged over the scales; the score is its maximum.

>>> from algorithms.registry import create_algorithm
>>> model = create_algorithm("fastflow", tiny=True)   # resnet18, random init, 64 px
"""

from ..info import AlgorithmInfo, Family, Schedule

INFO = AlgorithmInfo(
    key="fastflow",
    display_name="FastFlow",
    family=Family.NORMALIZING_FLOW,
    paper_title="FastFlow: Unsupervised Anomaly Detection and Localization via 2D Normalizing Flows",
    paper_url="https://arxiv.org/abs/2111.07677",
    code_url="https://github.com/gathierry/FastFlow",
    code_licence="Apache-2.0",
    description=(
        "A frozen CNN's multi-scale features are normalised (LayerNorm) and mapped by one 2-D normalising "
        "flow per scale to a standard normal; pixels with low likelihood are anomalous."
    ),
    deviations=(
        "The authors released no code; the code link is the unofficial implementation the field uses. "
        "Image score: the maximum of the anomaly map by default, as the unofficial code and anomalib (VisionAD takes "
        "its mean: score_reduction='mean'). Earlier versions of ours deviated and were fixed to the official code: "
        "the coupling clamp is clamp * tanh(.) (it was an arctan form), the loss sums the scales (it averaged them), "
        "the last subnet convolution keeps PyTorch's default initialisation (it was zero-initialised), and the "
        "global affine scale is FrEIA's SOFTPLUS parametrisation (it was exp)."
    ),
    schedule=Schedule(epochs=500, batch_size=32, input_size=256, optimizer="Adam, lr 1e-3, weight decay 1e-5"),
    map_variants=("anomaly_map",),
    tiny={"input_size": 64, "backbone": "resnet18", "pretrained": False, "flow_steps": 2, "conv3x3_only": True},
    tiny_epochs=1,
    demo={
        "params": {
            "input_size": 96,
            "backbone": "resnet18",
            "pretrained": False,
            "flow_steps": 2,
            "conv3x3_only": True,
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
