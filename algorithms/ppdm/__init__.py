"""PPDm: the "PPDM" variant of Diversity-Measurable Anomaly Detection (DMAD).

Liu, Chang, Ma, Shan, Chen, "Diversity-Measurable Anomaly Detection", CVPR 2023,
https://arxiv.org/abs/2303.05047; official code https://github.com/FlappyPeggy/DMAD, folder
``DMAD-PPDM`` (commit ``b3fefbb``; no licence file). Reverse distillation (RD4AD) made
diversity-measurable: anomalies that reverse distillation would reconstruct too well are pushed
into a deformation that can be measured, and the encoder's deepest features are vector-quantised.

1. **Learned deformation** (the paper's Pyramid Deformation Module; ``DMAD-PPDM`` is the code's
   variant for industrial images, on reverse distillation). A small CoordConv network predicts,
   from the image, a coarse (1/8 resolution, at most 8 px at 256 px) and a fine (1/2 resolution, at
   most 3 px) displacement field, plus two inverse fields. The image is warped coarse then fine
   (``grid_sample``) before the frozen encoder sees it.
2. **Reverse distillation with VQ.** Frozen WRN50-2 encoder (torchvision V1 weights, layers 1-3);
   RD4AD's one-class bottleneck whose input is the three levels reduced to 64 channels each (levels 1
   and 2 down to the level-3 grid) plus the level-3 features vector-quantised on a 200-code codebook
   (1024 + 192 channels); RD4AD's de-ResNet decoder.
3. **Loss.** RD4AD's global cosine loss between encoder and decoder features, plus the offset loss
   (mean displacement of the coarse and fine fields, a smoothness penalty on all four fields, and the
   MSE between the image and its warped-then-inverse-warped copy, weight gamma 1), plus the VQ loss
   (``0.25 * commitment + codebook``). Gradients reach the offset net through the frozen encoder.
4. **Schedule.** AdamW lr 5e-3, betas (0.5, 0.999), cosine annealing over 400 epochs, batch 8, 256 px.
5. **Inference.** RD4AD's map of the deformed image (sum over levels of ``1 - cos``, bilinear to
   256), warped back with the inverse fields, Gaussian sigma 4; image score = its maximum.

>>> from algorithms.registry import create_algorithm
>>> model = create_algorithm("ppdm", tiny=True)   # resnet18 encoder, random init, 64 px
"""

from ..info import AlgorithmInfo, Family, Schedule

INFO = AlgorithmInfo(
    key="ppdm",
    display_name="PPDm",
    family=Family.RECONSTRUCTION,
    paper_title="Diversity-Measurable Anomaly Detection",
    paper_url="https://arxiv.org/abs/2303.05047",
    code_url="https://github.com/FlappyPeggy/DMAD",
    code_licence="none",
    description=(
        "Reverse distillation of a frozen encoder's features through a vector-quantised one-class bottleneck, "
        "applied to the image after a learned, bounded deformation; the decoder's cosine disagreement, warped "
        "back to the image's geometry, is the anomaly map."
    ),
    deviations=(
        "One score rule, the official first one (the maximum of the smoothed map); the official evaluation "
        "returns per class the better AUROC of that rule and of a second one (map maximum plus 0.2 or 0.05 times "
        "the inverse-offset magnitude, both min-max-normalised over the test set), a test-set selection not "
        "reproduced here. The last epoch is scored (the official script evaluates and saves every 10 epochs). "
        "Encoder weights: wide_resnet50_2.tv_in1k through timm (the official code loads the same torchvision V1 "
        "file). Unused parameters of the official code are not created (a 1x1 conv4/bn4 in the bottleneck and "
        "the parent Conv2d weights of each CoordConv); they never reach an output or a gradient. Batched "
        "inference instead of one image at a time (same outputs: every layer is per-image in eval mode). "
        "Coordinate channels are computed for the input size at each call instead of being cached at the "
        "first call. The map's Gaussian is scipy's (components.blur), as the official gaussian_filter. "
        "The CPU demo and tests narrow the offset net to 16 channels (offset_channels; publication 64)."
    ),
    schedule=Schedule(
        epochs=400,
        batch_size=8,
        input_size=256,
        optimizer="AdamW lr 0.005, betas (0.5, 0.999), weight decay 0.01; cosine annealing T_max 400 (per epoch)",
    ),
    map_variants=("anomaly_map",),
    tiny={
        "input_size": 64,
        "backbone": "resnet18",
        "pretrained": False,
        "bottleneck_blocks": 1,
        "decoder_blocks": [1, 1, 1],
        "offset_channels": 16,
        "bn_calibration": True,
        "lr_epochs": 2,
    },
    tiny_epochs=2,
    demo={
        "params": {
            "input_size": 64,
            "backbone": "resnet18",
            "pretrained": False,
            "bottleneck_blocks": 1,
            "decoder_blocks": [1, 1, 1],
            "offset_channels": 16,
            "bn_calibration": True,
            "lr_epochs": 2,
        },
        # A fixed schedule sized for the CPU demo's budget (22 methods share it): one category's
        # train + predict takes 8.9 s of one thread (benchmarks/RESULTS.md, PPDm section); the offset
        # net is 16 wide (64 in the publication: 3x the cost). The wall-clock cap is a safety cap only.
        "epochs": 2,
        "train_time_limit_s": 900,
        "batch_size": 8,
    },
)
