"""EfficientAD: accurate visual anomaly detection at millisecond-level latencies.

Batzner, Heckler & König, WACV 2024, https://arxiv.org/abs/2303.14535.

A fixed teacher patch description network (PDN; medium by default, small available), distilled
beforehand from an ImageNet backbone, describes each 33x33 patch with 384 channels. A student PDN
(768 output channels) learns, on normal images, to predict the teacher's (normalised) descriptors
with a hard-feature loss (only the distances above the 0.999 quantile count), and a small
autoencoder learns to predict the teacher's descriptors of colour-jittered images through a 64-d
bottleneck, while the student's second half learns to predict the autoencoder. At test time the
student-teacher difference reveals structural anomalies and the student-autoencoder difference
logical ones; each map is normalised by its 0.9 and 0.995 quantiles on normal images and the
two are averaged. Adam (lr 1e-4, weight decay 1e-5), 70,000 steps of batch 1, learning rate x0.1
after 95%, 256 px; optional ImageNet penalty on the student.

**The teacher weights are not downloadable here**: pass ``teacher_weights=/path/teacher_medium.pth``.
Without them the teacher is random (a warning says so and ``metadata["random_teacher"]`` is set),
which is fine for tests but not the published method.

>>> from algorithms.registry import create_algorithm
>>> model = create_algorithm("efficient_ad", tiny=True)   # small PDN at quarter width, 64 px
"""

from ..info import AlgorithmInfo, Family, Schedule

INFO = AlgorithmInfo(
    key="efficient_ad",
    display_name="EfficientAD",
    family=Family.KNOWLEDGE_DISTILLATION,
    secondary_family=Family.RECONSTRUCTION,
    paper_title="EfficientAD: Accurate Visual Anomaly Detection at Millisecond-Level Latencies",
    paper_url="https://arxiv.org/abs/2303.14535",
    code_url="https://github.com/nelson1425/EfficientAD",
    code_licence="Apache-2.0",
    description=(
        "A student network learns to predict a pretrained teacher's patch descriptors and an autoencoder's "
        "output on normal images; disagreement marks structural and logical anomalies. Needs the distilled "
        "teacher weights (random teacher otherwise)."
    ),
    deviations=(
        "The authors released no code; the code link is the unofficial implementation the field uses. "
        "Fixed to the official code: the map-normalisation quantiles come from a 10 % hold-out of the training "
        "images, which are not trained on (they came from the whole training set), and the image score is the "
        "maximum of the map after padding and upsampling (it was taken before). anomalib 2.7 pads and upsamples "
        "before normalising and takes its quantiles on the padded maps; ours follows the official code. "
        "The ImageNet penalty is off unless imagenet_dir is given, and the teacher is random "
        "unless teacher_weights is given."
    ),
    schedule=Schedule(
        iterations=70_000,
        batch_size=1,
        input_size=256,
        optimizer="Adam, lr 1e-4, weight decay 1e-5; lr x0.1 after 95 % of the steps",
    ),
    map_variants=("combined", "student_teacher", "student_autoencoder"),
    tiny={"input_size": 64, "model_size": "small", "width": 0.25, "out_channels": 64, "pretrained": False},
    tiny_epochs=1,
    # The colleague's CPU recommendation (benchmarks/c2_synthetic_config.py): a 10x learning rate
    # for the few steps the budget allows, and replicate padding of the map border.
    demo={
        "params": {
            "input_size": 96,
            "model_size": "small",
            "width": 0.25,
            "out_channels": 64,
            "pretrained": False,
            "lr": 1e-3,
            "map_padding": "replicate",
        },
        # A fixed schedule sized for the CPU demo's budget (every algorithm on the 9 synthetic
        # categories within ~12 minutes on 2 idle cores; 96 px since 22 methods share it: one
        # category's train + predict, one thread, benchmarks/RESULTS.md "Demo"); the wall-clock cap
        # is a safety cap only.
        "epochs": 1,
        "train_time_limit_s": 900,
        "batch_size": 8,
    },
)
