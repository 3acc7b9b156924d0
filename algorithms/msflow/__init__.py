"""MSFlow: a multi-scale flow-based framework for unsupervised anomaly detection.

Zhou, Xu, Song, Shen & Shen, IEEE TNNLS 2024 (doi 10.1109/TNNLS.2023.3344118),
https://arxiv.org/abs/2308.15300; official code github.com/cool-xuan/msflow (CC BY-NC-ND 4.0:
this implementation is written from the paper and the project's reference facts only, no code
of it is used).

A frozen ImageNet CNN (``wide_resnet50_2.tv_in1k``, layers 1-3, each map 3 x 3 average-pooled with
stride 2) gives three scales. **Asymmetrical parallel flows** (2, 5 and 8 conditional all-in-one
couplings; convolutional subnets with a LayerNorm, 64-d positional-encoding condition, clamp 1.9,
SOFTPLUS global affine, hard permutations) map each scale on its own; a **fusion flow** (a
permutation per scale, then one Glow-style two-sided coupling whose subnet pools all scales to the
smallest, mixes them and hands each scale its part back) exchanges information between scales.
Training maximises the likelihood of all scales' latents under a standard normal (Adam, lr 1e-4,
batch 16, 100 epochs, linear warm-up over 3 epochs, x0.33 at epochs 70 and 90, gradient norm
clipped at 2). Per scale ``log p = -0.5 mean_c z^2``; two multi-scale aggregations: the
localisation map sums the per-image-normalised likelihoods (``"add"``), the detection map
multiplies them (``"mul"``, a sum of log-likelihoods); the image score is the mean of the top 3 %
of the detection map. Input 512 px.

>>> from algorithms.registry import create_algorithm
>>> model = create_algorithm("msflow", tiny=True)   # resnet18, random init, 64 px
"""

from ..info import AlgorithmInfo, Family, Schedule

INFO = AlgorithmInfo(
    key="msflow",
    display_name="MSFlow",
    family=Family.NORMALIZING_FLOW,
    paper_title="MSFlow: Multi-Scale Flow-based Framework for Unsupervised Anomaly Detection",
    paper_url="https://arxiv.org/abs/2308.15300",
    code_url="https://github.com/cool-xuan/msflow",
    code_licence="CC-BY-NC-ND-4.0",
    description=(
        "Parallel normalising flows of different depths map a frozen CNN's features at three scales to a "
        "standard normal, and a fusion flow couples the scales; positions with low likelihood are anomalous "
        "(scales summed for localisation, multiplied for the image score)."
    ),
    deviations=(
        "Re-implemented from the paper and written facts about the official code (its CC BY-NC-ND licence forbids "
        "derivatives), so details the paper leaves open are our choices: bilinear upsampling with align_corners=True, "
        "PyTorch's default initialisation of every subnet, the Glow block's output clamp (+-1e6) in the fusion "
        "coupling, and the warm-up ramped per optimiser step. The last epoch is evaluated (the published means equal "
        "the per-class maximum over epochs, i.e. a choice on the test set). No mixed precision. The warm-up completes "
        "after 3 epochs (VisionAD's copy never completes it)."
    ),
    schedule=Schedule(
        epochs=100,
        batch_size=16,
        input_size=512,
        optimizer=(
            "Adam, lr 1e-4; linear warm-up from 1e-5 over 3 epochs, x0.33 at epochs 70 and 90; gradient-norm clip 2"
        ),
    ),
    map_variants=("add", "mul"),
    tiny={
        "input_size": 64,
        "backbone": "resnet18",
        "pretrained": False,
        "parallel_blocks": [1, 1, 1],
        "cond_channels": 8,
        "warmup_epochs": 0,
        "lr": 1e-3,
    },
    tiny_epochs=1,
    demo={
        "params": {
            "input_size": 128,
            "backbone": "resnet18",
            "pretrained": False,
            "parallel_blocks": [1, 1, 1],
            "cond_channels": 16,
            "lr": 1e-3,
            "warmup_epochs": 0,
        },
        "epochs": 2,
        "train_time_limit_s": 900,
        "batch_size": 8,
    },
)
