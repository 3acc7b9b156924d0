"""CDO: Collaborative Discrepancy Optimization for reliable image anomaly localisation.

Cao, Xu, Zhang, Shen, IEEE Transactions on Industrial Informatics 2023,
https://doi.org/10.1109/TII.2023.3241579; official code https://github.com/caoyunkang/CDO
(MIT; the original implementation is commit ``c4ba550``).

1. **Expert and apprentice.** The expert is an ImageNet-pretrained CNN, frozen; the apprentice
   has the same architecture, is randomly initialised and trained (official code). Both describe
   the image at three scales (ResNet layers 1-3; WRN50-2: 256/512/1024 channels at strides
   4/8/16).
2. **Discrepancy.** At each position of each scale, ``d = ||e/|e| - a/|a|||^2`` between the
   L2-normalised expert and apprentice features; every scale is resized bilinearly to the first.
3. **Synthetic anomalies (MOM, margin optimisation).** 0-4 rectangles of uniform RGB noise per
   training image, half-extents in ``[S/40, S/10)``; the discrepancy is minimised on normal
   positions and maximised on synthetic ones.
4. **OOM (over-/under-optimisation) weighting.** Detached weights ``(d/mean d)^gamma`` on normal
   and ``(mean d/d)^gamma`` on synthetic positions (gamma 2) focus the loss on the normal
   positions still badly fitted and the synthetic ones still poorly separated (paper sec. III).
5. **Schedule.** AdamW lr 4e-4, weight decay 1e-4, ExponentialLR 0.95 per epoch, 50 epochs,
   batch 16, 256 px. **Every** epoch trains: the VisionAD code breaks out of epoch 0 before any
   step (a defect), so its 50 epochs are 49.
6. **Inference.** The sum over scales of ``d``, bilinear to the input size, Gaussian sigma 4;
   image score = the map's maximum.

>>> from algorithms.registry import create_algorithm
>>> model = create_algorithm("cdo", tiny=True)   # resnet18 expert and apprentice, 64 px
"""

from ..info import AlgorithmInfo, Family, Schedule

INFO = AlgorithmInfo(
    key="cdo",
    display_name="CDO",
    family=Family.KNOWLEDGE_DISTILLATION,
    paper_title="Collaborative Discrepancy Optimization for Reliable Image Anomaly Localization",
    paper_url="https://doi.org/10.1109/TII.2023.3241579",
    code_url="https://github.com/caoyunkang/CDO",
    code_licence="MIT",
    description=(
        "A randomly initialised apprentice network learns to match a frozen pretrained expert on normal images "
        "while being pushed away from it on pasted noise rectangles; an over-/under-optimisation weighting "
        "focuses training on the positions that need it. The expert-apprentice discrepancy is the anomaly map."
    ),
    deviations=(
        "Backbone: WRN50-2 with torchvision V1 weights (wide_resnet50_2.tv_in1k), as VisionAD ran it; the paper's "
        "default is HRNet-32 with weights hosted on OneDrive. Training starts at the first epoch (VisionAD's code "
        "skips epoch 0). Noise rectangles are pasted into the ImageNet-normalised tensor (uniform RGB noise "
        "normalised the same way), not into the uint8 image before the transform; drawn from a seeded generator. "
        "The map's Gaussian pads by reflection (components.blur)."
    ),
    schedule=Schedule(
        epochs=50,
        batch_size=16,
        input_size=256,
        optimizer="AdamW lr 4e-4, wd 1e-4 (apprentice); ExponentialLR gamma 0.95 per epoch",
    ),
    map_variants=("anomaly_map",),
    # Random-initialised expert and apprentice: BatchNorm calibration of the expert and a 7.5x
    # larger lr let two epochs of 8 images separate the conformance test's planted defect.
    tiny={"input_size": 64, "backbone": "resnet18", "pretrained": False, "bn_calibration": True, "lr": 3e-3},
    tiny_epochs=2,
    demo={
        "params": {
            "input_size": 64,
            "backbone": "resnet18",
            "pretrained": False,
            "bn_calibration": True,
            "lr": 3e-3,
        },
        "epochs": 2,
        "train_time_limit_s": 900,
        "batch_size": 8,
    },
)
