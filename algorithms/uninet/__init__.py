"""UniNet: contrastive reverse distillation with two teachers and domain-related feature selection.

Wei, Jiang, Liu, Wang, Yu, Han, "UniNet: A Contrastive Learning-guided Unified Framework with
Feature Selection for Anomaly Detection", CVPR 2025; official code
https://github.com/pangdatangtt/UniNet (MIT; read at commit ``7b3469f``).

1. **Two teachers.** A frozen ImageNet CNN (the *source* teacher, WRN50-2 layers 1-3) and a
   trainable copy of it (the *target* teacher, AdamW lr 1e-6, in train mode) describe each image.
2. **Reverse student.** RD4AD's one-class bottleneck (multi-scale fusion; UniNet's split-branch
   embedding blocks) and de-ResNet decoder reconstruct both teachers' features from a ``2B``
   batch; each student half is compared with the *other* teacher (six pairs over three levels).
3. **Domain-related feature selection (DFS).** In training, the student maps are re-weighted per
   channel and position by their teacher's spatial softmax and mean (learned per-channel theta).
4. **Contrastive loss.** Per pair, on L2-normalised features: 0.7 cosine distance + 0.3 InfoNCE
   over the positions of an image (temperature 2) + a hinge on the positive's probability.
5. **Schedule.** AdamW lr 5e-3 (bottleneck, student, DFS), 1e-6 (target teacher), betas (0.9,
   0.999), weight decay 1e-5; 100 epochs, batch 8, 256 px; the last epoch is evaluated.
6. **Inference (weighted decision mechanism).** Map = the sum over the six pairs of ``1 - cos``,
   upsampled, unsmoothed; score = the mean of the top ``k`` values of the Gaussian-smoothed map,
   ``k`` set per image from the six pair maxima.

>>> from algorithms.registry import create_algorithm
>>> model = create_algorithm("uninet", tiny=True)   # resnet18 teachers, random init, 64 px
"""

from ..info import AlgorithmInfo, Family, Schedule

INFO = AlgorithmInfo(
    key="uninet",
    display_name="UniNet",
    family=Family.KNOWLEDGE_DISTILLATION,
    paper_title=(
        "UniNet: A Contrastive Learning-guided Unified Framework with Feature Selection for Anomaly Detection"
    ),
    paper_url="https://openaccess.thecvf.com/content/CVPR2025/html/Wei_UniNet_A_Contrastive_Learning-guided_Unified_Framework_with_Feature_Selection_for_CVPR_2025_paper.html",
    code_url="https://github.com/pangdatangtt/UniNet",
    code_licence="MIT",
    description=(
        "A student decoder reconstructs the features of two teachers (a frozen ImageNet CNN and a slowly "
        "trained copy of it) from a one-class bottleneck, each half against the other teacher, with a "
        "contrastive loss over positions and a learned feature selection; anomalies are where student and "
        "teachers disagree (cosine distance summed over six pairs)."
    ),
    deviations=(
        "Feature selection is actually trained: the official code creates the DFS weights with "
        "nn.Parameter(...).to('cuda'), which returns unregistered tensors, so they never train (theta stays 1) "
        "and the module needs CUDA; here they are registered parameters trained with the student (AdamW lr 5e-3), "
        "and theta = min(sigmoid(w) + 0.5, 1) is computed as x - relu(x - 1) so that its gradient at the initial "
        "kink (w = 0, theta = 1) is the one from below (torch.clamp passes none there: anomalib's registered "
        "theta never moves either). "
        "The last epoch is evaluated: the official script evaluates on the test set every 10 epochs, keeps the "
        "checkpoint with the best test AUPRO and stops early on it. One configuration for every category: the "
        "official code hard-codes temperature 0.1 (instead of 2) for transistor, pill, cable, bottle, grid and "
        "foam, a target-teacher lr of 1e-4 and no feature selection for transistor (all three are hyperparameters "
        "here). Unused official parameters are not built (the bottleneck's conv4/bn4 and per-block bn7, the "
        "decoder's fc). When all six pair maxima are equal the score weight is beta (the official code averages "
        "an empty list). anomalib 2.7 departs from the official code (non-wide bottleneck, max instead of top-k "
        "mean of a 5x5-truncated blur for the score, temperature 0.1, an extra BCE head, AMSGrad with a "
        "MultiStepLR; tests/test_uninet_anomalib.py); ours follows the official code there."
    ),
    schedule=Schedule(
        epochs=100,
        batch_size=8,
        input_size=256,
        optimizer="AdamW lr 5e-3 (bottleneck, student, DFS) and 1e-6 (target teacher), betas (0.9, 0.999), wd 1e-5",
    ),
    map_variants=("anomaly_map",),
    tiny={
        "input_size": 64,
        "backbone": "resnet18",
        "pretrained": False,
        "bn_calibration": True,
        "bottleneck_blocks": 1,
        "decoder_blocks": [1, 1, 1],
    },
    tiny_epochs=1,
    demo={
        "params": {
            "input_size": 64,
            "backbone": "resnet18",
            "pretrained": False,
            "bn_calibration": True,
            "bottleneck_blocks": 1,
            "decoder_blocks": [1, 1, 1],
        },
        # A fixed schedule for the CPU demo's per-method budget (22 methods share make demo): one epoch of
        # the demo's 100 images at 64 px takes ~3 CPU-s on one thread (benchmarks/RESULTS.md, UniNet);
        # the wall-clock cap is the 900 s safety cap only.
        "epochs": 1,
        "train_time_limit_s": 900,
        "batch_size": 8,
    },
)
