"""SimpleNet (Liu et al., CVPR 2023): feature-space Gaussian noise and a discriminator.

Liu, Zhou, Ye, Zhang & Li, "SimpleNet: A Simple Network for Image Anomaly Detection and
Localization", CVPR 2023, https://arxiv.org/abs/2303.15140; official code
github.com/DonaldRR/SimpleNet (MIT) at ``351a2b8``. Our defaults follow its MVTec AD run
(``run.sh``):

1. **Features.** A frozen WideResNet-50-2 (torchvision V1 weights, ``wide_resnet50_2.tv_in1k``:
   the noise scale below is calibrated to them), layers 2 and 3, through PatchCore's locally aware
   patch embedding (3 x 3 neighbourhoods, per-layer pooling to 1536, layer3 upsampled to the
   layer2 grid, joint pooling to 1536; ``components.patch_embedding``). Paper section 3.1.
2. **Feature adaptor.** One fully connected layer 1536 -> 1536 (``pre_proj=1``, Xavier-normal
   weights); AdamW at ``lr * 0.1`` = 1e-4 (official ``proj_opt``). Paper section 3.2.
3. **Anomalous feature generator.** ``fake = adapted + eps``, ``eps ~ N(0, 0.015^2)`` i.i.d. per
   element, training only (paper eq. 4; ``noise_std 0.015``, ``mix_noise 1``).
4. **Discriminator.** ``Linear(1536, 1024) -> BatchNorm1d -> LeakyReLU(0.2) -> Linear(1024, 1,
   no bias)``, Xavier-normal Linear weights; it outputs a *normality* score. Adam, lr 2e-4,
   weight decay 1e-5 (paper section 3.4; ``dsc_layers 2``, ``dsc_hidden 1024``).
5. **Loss.** Truncated L1 with margin 0.5: ``mean(max(0, 0.5 - D(true))) + mean(max(0, 0.5 +
   D(fake)))`` (paper eq. 6; ``components.losses.truncated_l1_loss``).
6. **Schedule.** 40 meta-epochs of 4 discriminator epochs each (``meta_epochs 40``,
   ``gan_epochs 4``), batch 8. One of our epochs is one meta-epoch. The official cosine schedule
   of the discriminator exists but is off in its MVTec run (``--cos_lr`` not given): ``cosine_lr``.
7. **Inference.** Patch score ``-D(adapted feature)``; image score = the maximum patch score; the
   anomaly map is the patch scores bilinearly upsampled to the input size and smoothed with a
   Gaussian of sigma 4 (paper eq. 7-8; official ``RescaleSegmentor``).
"""

from ..info import AlgorithmInfo, Family, Schedule

INFO = AlgorithmInfo(
    key="simplenet",
    display_name="SimpleNet",
    family=Family.SYNTHETIC_ANOMALIES,
    paper_title="SimpleNet: A Simple Network for Image Anomaly Detection and Localization",
    paper_url="https://arxiv.org/abs/2303.15140",
    code_url="https://github.com/DonaldRR/SimpleNet",
    code_licence="MIT",
    description=(
        "Locally aware patch features of a frozen CNN pass a linear adaptor; Gaussian noise on the adapted "
        "features makes synthetic anomalies, and a small discriminator learns to tell them from the real ones. "
        "Its negated output is the anomaly score."
    ),
    deviations=(
        "Input: the harness's square resize to 256 px (VisionAD protocol); the official MVTec run resizes to 329 "
        "and centre-crops 288. The official code keeps the meta-epoch with the best test-set image AUROC and "
        "min-max normalises scores and maps over the test set; we keep the last epoch and report raw per-image "
        "outputs. The map's Gaussian pads by reflection (components.blur) where scipy's gaussian_filter mirrors "
        "the edge sample (differences only within 16 px of the border). Noise comes from a seeded generator."
    ),
    schedule=Schedule(
        epochs=40,
        batch_size=8,
        input_size=256,
        optimizer="4 discriminator epochs per epoch; Adam lr 2e-4, wd 1e-5 (discriminator); AdamW lr 1e-4 (adaptor)",
    ),
    map_variants=("anomaly_map",),
    tiny={
        "input_size": 64,
        "backbone": "resnet18",
        "pretrained": False,
        "pretrain_embed_dim": 64,
        "target_embed_dim": 64,
        "dsc_hidden": 32,
        "gan_epochs": 2,
    },
    tiny_epochs=1,
    # Random-initialised features: the publication's noise (0.015, calibrated to pretrained WRN50-2
    # features) is too small to separate from the spread of random features; 0.1 is (synthetic
    # suite, benchmarks/RESULTS.md). 80 px, one discriminator pass per epoch: the demo budget.
    demo={
        "params": {
            "input_size": 80,
            "backbone": "resnet18",
            "pretrained": False,
            "bn_calibration": True,
            "pretrain_embed_dim": 256,
            "target_embed_dim": 256,
            "dsc_hidden": 128,
            "noise_std": 0.1,
            "meta_epochs": 2,
            "gan_epochs": 1,
        },
        "epochs": 2,
        "train_time_limit_s": 900,
        "batch_size": 8,
    },
)
