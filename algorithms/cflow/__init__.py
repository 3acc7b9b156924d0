"""CFlow-AD: real-time unsupervised anomaly detection with localisation via conditional normalising flows.

Gudovskiy, Ishizaka & Kozuka (WACV 2022), https://arxiv.org/abs/2107.12571; official code
github.com/gudovskiy/cflow-ad (BSD-3-Clause).

A frozen ImageNet CNN (``wide_resnet50_2.tv_in1k``, layers 2-4: the official ``pool_layers=3``)
gives feature maps at three scales. Each scale has its own decoder: a conditional normalising flow
of 8 FrEIA-style all-in-one blocks (fully connected subnet ``Linear(C/2 + P, 2 (C/2 + P)) -> ReLU
-> Linear(., C)``, clamp 1.9, SOFTPLUS global affine, fixed random orthogonal mixing) acting on
single feature vectors ("fibres") conditioned on the 128-d 2-D sinusoidal encoding of their
position (paper sec. 3.3-3.4). Training maximises ``log p / C`` through ``-logsigmoid``, with one
Adam step (lr 2e-4, warm-up then cosine) per random chunk of 256 fibres. The anomaly map sums the
upsampled per-scale likelihoods ``exp(log p / C - m_l)`` and negates them; the score is its maximum.

>>> from algorithms.registry import create_algorithm
>>> model = create_algorithm("cflow", tiny=True)   # resnet18, random init, 64 px
"""

from ..info import AlgorithmInfo, Family, Schedule

INFO = AlgorithmInfo(
    key="cflow",
    display_name="CFlow-AD",
    family=Family.NORMALIZING_FLOW,
    paper_title=(
        "CFLOW-AD: Real-Time Unsupervised Anomaly Detection with Localization via Conditional Normalizing Flows"
    ),
    paper_url="https://arxiv.org/abs/2107.12571",
    code_url="https://github.com/gudovskiy/cflow-ad",
    code_licence="BSD-3-Clause",
    description=(
        "One conditional normalising flow per encoder scale maps single feature vectors, conditioned on a "
        "positional encoding, to a standard normal; positions with low likelihood are anomalous."
    ),
    deviations=(
        "Per-image maps: the official code subtracts the maximum log-likelihood over the whole test set (per scale "
        "and again on the summed map) before exponentiating, so one image's map depends on the others; we subtract "
        "a constant fixed after training instead (the per-scale maximum of log p / C over the training images, "
        "computed in pre_eval) and take L minus the summed likelihoods. The ranking within one scale is unchanged; "
        "the weighting across scales differs slightly. The warm-up is ramped per epoch (official: per batch). "
        "One input size for every category (the README trains some classes at 512 px)."
    ),
    schedule=Schedule(
        epochs=200,
        batch_size=32,
        input_size=256,
        optimizer="Adam, lr 2e-4; 25 meta-epochs x 8 sub-epochs, 2 warm-up meta-epochs from lr/10, cosine to lr*1e-3",
    ),
    map_variants=("anomaly_map",),
    tiny={
        "input_size": 64,
        "backbone": "resnet18",
        "layers": ["layer2", "layer3"],
        "pretrained": False,
        "cond_channels": 16,
        "coupling_blocks": 2,
        "fibre_batch": 64,
    },
    tiny_epochs=1,
    demo={
        "params": {
            "input_size": 64,
            "backbone": "resnet18",
            "layers": ["layer2", "layer3"],
            "pretrained": False,
            "cond_channels": 32,
            "coupling_blocks": 2,
            "fibre_batch": 256,
            "lr": 1e-3,
            "sub_epochs": 1,
            "meta_epochs": 4,
            "warmup_meta_epochs": 0,
        },
        "epochs": 4,
        "train_time_limit_s": 900,
        "batch_size": 8,
    },
)
