"""AST: asymmetric student-teacher networks for industrial anomaly detection.

Rudolph, Wehrbein, Rosenhahn & Wandt (WACV 2023), https://arxiv.org/abs/2210.07829; official code
github.com/marco-rudolph/AST (no licence file: re-implemented from the paper and the facts in
``shared/reference/algorithms-next.md`` A4, no code copied).

A frozen EfficientNet-B5 (timm ``tf_efficientnet_b5.aa_in1k``, the TensorFlow AutoAugment weights
the official code loads through efficientnet-pytorch) gives 304-channel features at stride 32 from
the last block of its sixth stage (24 x 24 at the publication's 768 px input; not a timm
``features_only`` output). The teacher is a conditional normalising flow on that map: 4 x (fixed
channel permutation, Glow coupling with conv subnets gated by a zero-initialised scale, kernels 3, 3,
3, 5, soft clamp 1.9), conditioned on a 32-d positional encoding; it is trained first by maximum
likelihood. The student, a plain CNN (4 residual blocks at 1024 channels) fed features plus the
encoding, then regresses the teacher's latent ``z``. Each uses Adam (lr 2e-4, weight decay 1e-5) for
72 epochs at batch 8. The anomaly map is ``mean_c (z_teacher - student)^2`` per position, upsampled
bicubically; the image score is its mean over positions (the paper's main number).

>>> from algorithms.registry import create_algorithm
>>> model = create_algorithm("ast", tiny=True)   # efficientnet_b0, random init, 64 px
"""

from ..info import AlgorithmInfo, Family, Schedule

INFO = AlgorithmInfo(
    key="ast",
    display_name="AST",
    family=Family.KNOWLEDGE_DISTILLATION,
    secondary_family=Family.NORMALIZING_FLOW,
    paper_title="Asymmetric Student-Teacher Networks for Industrial Anomaly Detection",
    paper_url="https://arxiv.org/abs/2210.07829",
    code_url="https://github.com/marco-rudolph/AST",
    code_licence="none",
    description=(
        "A normalising-flow teacher maps frozen CNN features to a Gaussian latent; a conventional CNN student "
        "learns to predict that latent on normal images only. Where the student's prediction departs from the "
        "teacher's latent, the image is anomalous."
    ),
    deviations=(
        "Backbone weights: timm tf_efficientnet_b5.aa_in1k (the TensorFlow AutoAugment checkpoint) stands in for "
        "efficientnet-pytorch's efficientnet-b5 download; timm computes TensorFlow 'same' padding for the actual "
        "input, where efficientnet-pytorch fixes it for B5's native 456 px, so border padding may differ by one "
        "pixel in stride-2 layers at 768 px. Features are recomputed for every batch (the official code extracts "
        "them once before training: the same values, the extractor being frozen and the inputs unaugmented). The "
        "map is upsampled bicubically to the full input size (official: by 8x to a quarter of it). The fixed "
        "channel permutations are drawn from our seed (official: numpy seeds 0-3). The student has no unused "
        "gamma parameter (the official Student declares one it never uses). The last epoch is evaluated; the "
        "official code logs the best test score over epochs as well as the last. RGB mode only (the depth and "
        "foreground-mask options are for MVTec 3D-AD)."
    ),
    schedule=Schedule(
        epochs=144,
        batch_size=8,
        input_size=768,
        optimizer="72 teacher epochs, then 72 student epochs; Adam lr 2e-4, eps 1e-8, weight decay 1e-5 (each)",
    ),
    map_variants=("anomaly_map",),
    tiny={
        "input_size": 64,
        "backbone": "efficientnet_b0",
        "stage": 4,
        "pretrained": False,
        "bn_calibration": True,
        "cond_channels": 8,
        "teacher_hidden": 16,
        "kernel_sizes": [3, 3],
        "student_hidden": 32,
        "student_blocks": 1,
        "teacher_epochs": 1,
    },
    tiny_epochs=2,
    # Random-initialised EfficientNet-B0 at 96 px, tapped at stride 8 (the end of its third stage, 40
    # channels: a 12 x 12 map; the publication's stride-32 tap would give 3 x 3, and at 128 px the
    # stride-16 tap's 8 x 8 map localised at chance: pixel AUROC 0.483 vs 0.847 for the stride-8 tap on
    # four synthetic categories, benchmarks/RESULTS.md); a narrow teacher (hidden 32) and student
    # (hidden 64, one residual block); 2 teacher then 2 student epochs: 4.4 s of CPU time (one thread)
    # for one synthetic category, training and prediction (benchmarks/demo_budget.py).
    demo={
        "params": {
            "input_size": 96,
            "backbone": "efficientnet_b0",
            "stage": 2,
            "pretrained": False,
            "bn_calibration": True,
            "cond_channels": 16,
            "teacher_hidden": 32,
            "kernel_sizes": [3, 3, 3, 5],
            "student_hidden": 64,
            "student_blocks": 1,
            "lr": 1e-3,
            "teacher_epochs": 2,
        },
        "epochs": 4,
        "train_time_limit_s": 900,
        "batch_size": 8,
    },
)
