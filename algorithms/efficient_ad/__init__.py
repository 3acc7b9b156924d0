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

from .detector import PAPER_SCHEDULE, EfficientAd, color_jitter, paper_epochs

__all__ = ["PAPER_SCHEDULE", "EfficientAd", "color_jitter", "paper_epochs"]
