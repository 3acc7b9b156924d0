"""The random baseline: uniform random image scores and anomaly maps, the floor every method must beat.

Nothing is learned. Each call to ``predict`` draws from a generator seeded by the ``seed``
hyperparameter and the number of earlier calls, so a run repeats exactly. It is also the
smallest complete example of the package layout (``model.py`` + ``detector.py`` + this record).
"""

from ..info import AlgorithmInfo, Family, Schedule

INFO = AlgorithmInfo(
    key="random",
    display_name="Random baseline",
    family=Family.OTHER,
    description="Uniform random image scores and anomaly maps; the floor every method must beat.",
    schedule=Schedule(epochs=1, batch_size=8, input_size=256, optimizer="none: nothing is trained"),
    map_variants=("anomaly_map",),
    one_shot=True,
    is_baseline=True,
    tiny={"input_size": 64},
    demo={"params": {"input_size": 128}, "epochs": 1, "train_time_limit_s": 900, "batch_size": 16},
)
