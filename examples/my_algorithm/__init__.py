"""My Algorithm: the template of an algorithm package (a small convolutional autoencoder).

Copy this folder to ``algorithms/<key>/`` (see ``docs/adding-an-algorithm.md``). This docstring
is the method's short description for readers of the code: the paper (authors, venue, link), what
the method does, and the publication's defaults.

The example itself: a convolutional autoencoder learns to reconstruct the (ImageNet-normalised)
defect-free training images; the anomaly map is the per-pixel squared reconstruction error,
smoothed by a Gaussian, and the image score is its maximum. It stands for the many
gradient-trained methods; a one-shot method (a memory bank) sets ``one_shot=True`` and fills its
state in ``pre_eval`` instead (see ``algorithms/patchcore``).

This file holds the record below and nothing that imports torch: the registry, the run
specification and the web process read it without building a model.
"""

from algorithms.info import AlgorithmInfo, Family, Schedule

INFO = AlgorithmInfo(
    key="my_algorithm",  # = the folder name under algorithms/; used by configs, the CLI, the leaderboard
    display_name="My Algorithm",
    family=Family.RECONSTRUCTION,  # MEMORY_BANK, NORMALIZING_FLOW, KNOWLEDGE_DISTILLATION, RECONSTRUCTION,
    # SYNTHETIC_ANOMALIES or OTHER; optionally secondary_family=...
    paper_title="",  # the publication
    paper_url="",  # e.g. https://arxiv.org/abs/...
    code_url="",  # the official code, and its licence (SPDX, or "none" when it has no licence file)
    code_licence="",
    description="A convolutional autoencoder reconstructs normal images; large reconstruction errors are anomalies.",
    deviations="",  # what our implementation does differently from the publication (shown on the method page)
    # The publication's schedule: epochs=... or iterations=..., batch size, optimiser, input size
    # (= the default of the input_size hyperparameter). Runs that name no schedule use it.
    schedule=Schedule(epochs=100, batch_size=16, input_size=256, optimizer="Adam, lr 1e-3"),
    map_variants=("anomaly_map",),  # the names of the maps _predict returns; the first one is ranked
    # Seconds-fast CPU settings for the conformance test: small, pretrained=False, input_size <= 64.
    tiny={"input_size": 64, "width": 8},
    tiny_epochs=1,
    # The CPU demo's run settings (make demo, algorithms/configs/synthetic_cpu.py): about 10 s of
    # training per category on 2 cores. Leave it out to run `tiny` for `tiny_epochs` epochs.
    demo={"params": {"input_size": 128, "width": 16}, "epochs": 10, "train_time_limit_s": 10, "batch_size": 8},
)
