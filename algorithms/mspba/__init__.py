"""MSPBA: multi-scale patch-based representation learning (Tsai, Wu, Lai, WACV 2022).

C.-C. Tsai, T.-H. Wu, S.-H. Lai, "Multi-Scale Patch-Based Representation Learning for Image
Anomaly Detection and Segmentation", WACV 2022. The authors' code is ``chinchia/Defect-Detection``
(public mirror ``Howeng98/MSPBA``; no licence file; facts in ``algorithms-next.md`` section A11).
The VisionAD paper lists MSPBA but its library has no implementation, so this one is built from
the paper's description and the facts of the authors' code, re-implemented (nothing copied).

A Patch-SVDD-style method on three patch scales:

1. **Encoders.** A shared ImageNet CNN (VGG16, torchvision weights, fine-tuned with lr 1e-5 like
   the rest: the official optimiser holds its parameters) reads each patch on its own: 64-pixel
   patches to relu5_3 (4 x 4 x 512), 32-pixel ones to relu3_3 (8 x 8 x 256), 16-pixel ones to
   relu2_2 (8 x 8 x 128). A small convolution stack per scale (no padding, LeakyReLU 0.1, tanh)
   reduces that map to one ``D = 64`` embedding.
2. **Training** (per scale, summed): (a) a position classifier (MLP 64-128-256-512, then a
   normalised linear layer) predicts which of 12 directions (30 degrees apart) separates two
   patches ``3K/4 .. K`` apart from the difference of their embeddings, cross-entropy, with
   colour-shift and pixel noise on both patches; (b) an SVDD loss pulls a patch and its
   ``K/16``-jittered neighbour together (``||h1 - h2||`` and ``-cos``) and pushes a far patch
   away in direction (``+cos``), weighted by ``lambda = 1e-3`` (eq. 5); (c) after 10 epochs a
   clustering loss pulls each embedding towards the nearest of 50 k-means centres, re-clustered
   every 5 epochs. Adam lr 1e-5; 100 samples per image and task per epoch, batch 64.
3. **Inference.** Every patch on a grid (stride 16 for 64-patches, 4 for 32- and 16-patches) is
   embedded; its score is the L2 distance to the nearest training-patch embedding of the same
   scale; scores are spread over the patch's pixels and overlaps averaged (one 256 x 256 map per
   scale). Anomaly map = the sum of the three maps (``product_map``: their product, the code's
   second variant); image score = its maximum.
"""

from ..info import AlgorithmInfo, Family, Schedule

INFO = AlgorithmInfo(
    key="mspba",
    display_name="MSPBA",
    family=Family.MEMORY_BANK,
    paper_title="Multi-Scale Patch-Based Representation Learning for Image Anomaly Detection and Segmentation",
    paper_url=(
        "https://openaccess.thecvf.com/content/WACV2022/html/Tsai_Multi-Scale_Patch-Based_Representation_"
        "Learning_for_Image_Anomaly_Detection_and_Segmentation_WACV_2022_paper.html"
    ),
    code_url="https://github.com/chinchia/Defect-Detection",
    code_licence="none",
    description=(
        "Self-supervised encoders for 64-, 32- and 16-pixel patches (relative-position classification, "
        "near/far patch similarity, clustering) on a VGG16; a patch is anomalous when its embedding is far "
        "from every training patch of its scale, and the three scales' maps are summed."
    ),
    deviations=(
        "Not in VisionAD's library (absent there): built from the paper and the authors' code (public mirror "
        "Howeng98/MSPBA), re-implemented. What they leave open and what we chose: "
        "(1) The official code computes the clustering loss on detached embeddings, so it contributes no "
        "gradient, and recomputes it only every 5th epoch (a stale constant otherwise); we let it train every "
        "step after epoch 10 with weight 1 (cluster_weight=0 gives the code's gradients). "
        "(2) K-means: the code's first clustering pools the embeddings of epochs 1-4 (20 random-partition "
        "restarts, 30 Lloyd iterations, best by a sum of per-cluster mean distances) and its refresh at epoch 5 "
        "runs on an all-zero feature buffer (a bug); we cluster the clustering patches' embeddings of every 5th "
        "epoch: 20 random-partition restarts kept by inertia the first time, then 40 Lloyd iterations from the "
        "previous centres. "
        "(3) Inputs are ImageNet-normalised (the harness's preprocessing) instead of the code's subtraction of "
        "the per-pixel mean training image and division by 255; the position task's noise (sigma 0.02 of the "
        "intensity range) is converted to those units. "
        "(4) Exact nearest neighbours for every scale (the code uses a KD-tree for 64-patches and the "
        "approximate NGT index for the others). "
        "(5) 100 epochs (the code runs 101, the first of which trains nothing); the last epoch is scored (the "
        "code keeps the epoch with the best test AUROC). Samples are drawn per loader batch (each step's "
        "images come from one batch) rather than over the whole training set. "
        "(6) Each parameter is stepped once per iteration (the code lists the shared VGG16 three times in "
        "Adam). The classifier's last layer keeps the code's normalised, gradient-free weight (only its bias "
        "learns). "
        "(7) Where the sources disagree we follow the authors' code: 12 relative directions 30 degrees apart "
        "(the abstract's refined self-supervised task; Patch SVDD had 8 grid neighbours), lambda weighting the "
        "SVDD loss (the README's 'lambda in Eq. 5'; not the clustering loss), and the VGG16 fine-tuned with the "
        "heads (its parameters are in the official optimiser; train_backbone=False freezes it). The paper's "
        "full text was not available to us; its equations are known only through the code and its README. "
        "Optional coreset_ratio < 1 (PatchCore's greedy coreset on the banks) and bn_calibration are CPU-demo "
        "aids, off by default."
    ),
    schedule=Schedule(
        epochs=100,
        batch_size=64,
        input_size=256,
        optimizer="Adam, lr 1e-5 (encoders, classifiers and the VGG16); 100 samples per image per epoch",
    ),
    map_variants=("anomaly_map", "product_map"),
    tiny={
        "input_size": 64,
        "backbone": "lcnet_050",
        "layers": [3, 1, 0],
        "pretrained": False,
        "train_backbone": False,
        "bn_calibration": True,
        "strides": [16, 16, 8],
        "num_clusters": [4, 4, 4],
        "cluster_every": 1,
        "cluster_start": 1,
        "cluster_restarts": 2,
        "samples_per_image": 2,
        "batch_size": 16,
        "lr": 1e-4,
    },
    tiny_epochs=2,
    # The CPU demo: a random-initialised LCNet-0.5 (frozen, BatchNorm re-estimated; every patch
    # goes through the CNN on its own, so a cheap one) whose stride-16/4/2 stages give the
    # published heads their input sides for 64/32/16-px patches, at 64 px with coarser test grids
    # (strides 16/16/8) and one sample per image and task per epoch: 7.7 s of single-thread CPU
    # for one category (benchmarks/RESULTS.md, MSPBA section). The tiny config is the same shape.
    demo={
        "params": {
            "input_size": 64,
            "backbone": "lcnet_050",
            "layers": [3, 1, 0],
            "pretrained": False,
            "train_backbone": False,
            "bn_calibration": True,
            "strides": [16, 16, 8],
            "num_clusters": [10, 10, 10],
            "cluster_every": 1,
            "cluster_start": 1,
            "cluster_restarts": 3,
            "samples_per_image": 1,
            "lr": 1e-4,
        },
        "epochs": 2,
        "train_time_limit_s": 900,
        "batch_size": 16,
    },
)
