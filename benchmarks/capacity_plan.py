"""Capacity on paper: GPU-hours of a full VADI re-benchmark per algorithm, and wall-clock on 1, 8 and 64 GPUs.

No GPU is available where this was written: the per-image GPU costs below are ESTIMATES (stated
per algorithm, with where each comes from); the data-loading cost is MEASURED here (decoding
and resizing real-resolution images on the CPU, with ``make_loader``, the runner's loader), and
so is scoring (``benchmarks/scoring_throughput.py``). The wall-clock times come from simulating
this project's queue design: one worker per GPU, one job per (algorithm, category), the fair
dispatcher's order (``leaderboard.services.dispatch.fair_order``, the same function the
service uses) with ``ahead`` jobs waiting in the broker.

    .venv/bin/python benchmarks/capacity_plan.py [--decode-ms 26.7] [--loader-threads 4] [--ahead 2]
        [--measured var/epoch_timing.json]   # from benchmarks/epoch_timing.py on a GPU

One job (one category) on one GPU, in seconds::

    setup + min(epochs x n_train x (gpu_train + decode), 7200) + n_test x (gpu_test + decode) + scoring

with 7200 s the paper's training budget (``train_time_limit_s``; the VisionAD paper, section 4:
"Each algorithm was given a training time of two hours"), ``decode`` the CPU time to decode and
resize one image divided by the loader's threads (``make_loader`` decodes each batch with up to
4 threads; a GPU server has at least 4 cores per GPU), ``setup`` 60 s (process start, imports,
weights from the local cache, data index) and ``scoring`` the measured metrics + ground-truth
time per category. Methods whose schedule is fixed in optimiser steps, not epochs, give
``steps x batch`` images in all.
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BUDGET_S = 7200.0
SETUP_S = 60.0
#: Measured (benchmarks/scoring_throughput.py, this machine, CPU time): ground truth 15.9 s +
#: metrics 18.3 s for the 27 categories, i.e. about 1.3 s per category.
SCORING_S = (15.9 + 18.3) / 27

#: Training images (train/good) and test images of each VADI category: MVTec AD, then VisA (1cls).
MVTEC_TRAIN = {"bottle": 209, "cable": 224, "capsule": 219, "carpet": 280, "grid": 264, "hazelnut": 391,
               "leather": 245, "metal_nut": 220, "pill": 267, "screw": 320, "tile": 230, "toothbrush": 60,
               "transistor": 213, "wood": 247, "zipper": 240}  # fmt: skip
MVTEC_TEST = {"bottle": 83, "cable": 150, "capsule": 132, "carpet": 117, "grid": 78, "hazelnut": 110,
              "leather": 124, "metal_nut": 115, "pill": 167, "screw": 160, "tile": 117, "toothbrush": 42,
              "transistor": 100, "wood": 79, "zipper": 151}  # fmt: skip
VISA_TRAIN = {"candle": 900, "capsules": 542, "cashew": 450, "chewinggum": 453, "fryum": 450, "macaroni1": 900,
              "macaroni2": 900, "pcb1": 904, "pcb2": 901, "pcb3": 905, "pcb4": 904, "pipe_fryum": 450}  # fmt: skip
VISA_TEST = {"candle": 200, "capsules": 160, "cashew": 150, "chewinggum": 150, "fryum": 150, "macaroni1": 200,
             "macaroni2": 200, "pcb1": 200, "pcb2": 200, "pcb3": 201, "pcb4": 201, "pipe_fryum": 150}  # fmt: skip
CATEGORIES = [(f"mvtec/{k}", MVTEC_TRAIN[k], MVTEC_TEST[k]) for k in MVTEC_TRAIN] + [
    (f"visa/{k}", VISA_TRAIN[k], VISA_TEST[k]) for k in VISA_TRAIN
]


@dataclass(frozen=True)
class Schedule:
    """An algorithm's publication schedule and ESTIMATED GPU costs (ms per image, A100-class, fp32/TF32).

    ``epochs``: passes over the training set (at most ``epoch_images_cap`` images each when set);
    or ``steps`` x ``batch`` images in all.
    ``extra_s``: work outside the per-image loop (memory-bank coreset, kNN index), per category,
    as a function of the number of training images. ``source``: where the estimate comes from.
    """

    name: str
    present: bool
    gpu_train_ms: float
    gpu_test_ms: float
    epochs: int = 0
    steps: int = 0
    batch: int = 1
    extra_s_per_1000_train: float = 0.0
    source: str = ""
    epoch_images_cap: int = 0  # an epoch stops after this many images (GLASS's ``limit``); 0: none

    def train_images(self, n_train: int) -> int:
        if self.steps:
            return self.steps * self.batch
        return self.epochs * (min(n_train, self.epoch_images_cap) if self.epoch_images_cap else n_train)


#: The algorithms (``present``: whether the registry holds it, read at run time), with the
#: schedules of those not registered yet from shared/reference/algorithms-next.md.
#: GPU costs: a frozen WRN50-2 forward at 256 px ~1.7 ms/image on an A100-class GPU (ResNet-50
#: ~2,000 img/s at 224 px in TF32, WRN50-2 = 2.8x its FLOPs, (256/224)^2 more pixels); a trained
#: network of similar size costs ~3x its forward (forward + backward); batch-1 schedules are
#: bound by kernel launches (~10 ms/step). Where algorithms-next.md gives a per-class time, the
#: cost is set so that MVTec AD reproduces it.
SCHEDULES = [
    Schedule("patchcore", True, 1.7, 3.0, epochs=1, extra_s_per_1000_train=45.0,
             source="WRN50-2 forward; greedy coreset 10% of N x 1024 patches, ~0.35 ms per pick (memory-bound)"),
    Schedule("reverse_distillation", True, 7.0, 3.0, epochs=200,
             source="encoder forward + OCBE/decoder forward+backward (~3x); 200 epochs, batch 16"),
    Schedule("fastflow", True, 6.0, 3.0, epochs=500,
             source="WRN50-2 forward + 8 flow steps x 3 scales (~58 GFLOP forward, x3 with backward); 500 epochs"),
    Schedule("efficient_ad", True, 10.0, 4.0, steps=70000, batch=1,
             source="PDN teacher/student + autoencoder, batch 1: launch-bound ~10 ms/step; 70,000 steps"),
    Schedule("random", True, 0.0, 0.0, epochs=0, source="no training; reads the test images"),  # (1 no-op epoch)
    Schedule("cflow", False, 20.0, 8.0, epochs=200,
             source="algorithms-next A1: 20-60 min per class at 256 (many small fibre steps)"),
    Schedule("msflow", False, 6.0, 4.0, epochs=100, source="algorithms-next A2: ~10-20 min per class"),
    Schedule("fastflow_altub", False, 6.5, 3.0, epochs=500, source="as FastFlow (algorithms-next A3)"),
    Schedule("ast", False, 3.0, 6.0, epochs=144,
             source="algorithms-next A4: features cached, 'minutes per class'; 768 px EffNet-B5 once"),
    Schedule("cdo", False, 7.0, 3.0, epochs=50, source="2x WRN50-2 (expert frozen, apprentice trained); 50 epochs"),
    Schedule("cfa", False, 3.0, 3.0, epochs=30, source="algorithms-next A6: 'minutes per class'; 30 epochs"),
    Schedule("pfm", False, 3.0, 2.0, epochs=200, source="two frozen CNNs (R34, R50) + projectors; 200 epochs"),
    Schedule("pefm", False, 3.5, 2.5, epochs=200, source="as PFM with positional encoding; 200 epochs"),
    Schedule("simplenet", False, 10.0, 4.0, epochs=40, source="batch 1 (VisionAD): launch-bound; 40 meta-epochs"),
    Schedule("ppdm", False, 40.0, 50.0, epochs=400,
             source="algorithms-next A9: ~1-2 h per class; batch-1 inference"),
    Schedule("memseg", False, 15.0, 4.0, steps=5000, batch=8,
             source="algorithms-next A10: 5000 steps ~15-30 min (Perlin/texture synthesis per image on the CPU)"),
    Schedule("mspba", False, 4.0, 10.0, epochs=101, extra_s_per_1000_train=300.0,
             source="algorithms-next A11: 101 epochs + large kNN (low confidence)"),
    Schedule("dinomaly", False, 18.0, 15.0, steps=5000, batch=16,
             source="algorithms-next B1: 5000 it x 16 at 392 px ~15-25 min on H100 (~25 min A100)"),
    Schedule("glass", False, 25.0, 5.0, epochs=640, batch=8, epoch_images_cap=392,
             source="algorithms-next B2: 640 x 392 images + 20 ascent steps each, ~1-2 h per class"),
    Schedule("supersimplenet", False, 4.0, 3.0, epochs=300, source="algorithms-next B3: ~10-20 min per class"),
    Schedule("uninet", False, 10.0, 6.0, epochs=100, source="RD components with two teachers; 100 epochs"),
    Schedule("anomaly_dino", False, 2.0, 4.0, epochs=1, extra_s_per_1000_train=10.0,
             source="training-free DINOv2-S memory bank + kNN (algorithms-next C)"),
    Schedule("inp_former", False, 18.0, 15.0, epochs=200,
             source="official single-class script: 200 epochs x batch 16 at 392 px; per-image cost as Dinomaly"),
]  # fmt: skip


def with_registry_schedule(s: Schedule) -> Schedule:
    """A registered algorithm's epochs/iterations and batch size as its registry states them (the code's)."""
    from algorithms.registry import UnknownAlgorithmError, get_algorithm_info

    try:
        schedule = get_algorithm_info(s.name).schedule
    except UnknownAlgorithmError:
        return replace(s, present=False)
    if schedule.iterations:
        return replace(s, present=True, epochs=0, steps=schedule.iterations, batch=schedule.batch_size)
    return replace(s, present=True, epochs=schedule.epochs or 0, steps=0, batch=schedule.batch_size)


def job_seconds(s: Schedule, n_train: int, n_test: int, decode_ms: float, measured: dict | None = None) -> float:
    """Seconds of one (algorithm, category) job on one GPU worker: ESTIMATED, or from ``measured``.

    ``measured`` (``benchmarks/epoch_timing.py`` on a GPU): ms per training and test image, data
    loading included, and pre-evaluation seconds per 1000 training images.
    """
    train_images = s.train_images(n_train)
    if measured is not None:
        train = train_images * measured["train_ms_per_image"] / 1000
        train += measured["pre_eval_s_per_1000_train"] * n_train / 1000
        test = n_test * measured["test_ms_per_image"] / 1000
    else:
        train = train_images * (s.gpu_train_ms + decode_ms) / 1000 + s.extra_s_per_1000_train * n_train / 1000
        test = n_test * (s.gpu_test_ms + decode_ms) / 1000
    return SETUP_S + min(train, BUDGET_S) + test + SCORING_S


def is_capped(s: Schedule, n_train: int, decode_ms: float, measured: dict | None = None) -> bool:
    per_image = measured["train_ms_per_image"] if measured is not None else s.gpu_train_ms + decode_ms
    return s.train_images(n_train) * per_image / 1000 >= BUDGET_S


def measure_decode_ms(n: int = 24, side: int = 1024) -> float:
    """MEASURED: CPU ms to decode and resize (to 256) one real-resolution image with the runner's loader."""
    import torch

    from algorithms.data import generate_suite, load_category, make_loader

    with tempfile.TemporaryDirectory() as tmp:
        generate_suite(tmp, seed=0, categories=["leather"], image_size=side, n_train=n, n_test_good=1,
                       n_test_defect=1, workers=1)  # fmt: skip
        images = load_category("synthetic/leather", roots={"synthetic": tmp}).train_images()
        best = float("inf")
        for _ in range(3):
            cpu0 = time.process_time()
            for batch in make_loader(images, size=256, batch_size=8):
                assert isinstance(batch, torch.Tensor)
            best = min(best, (time.process_time() - cpu0) * 1000 / n)
    return best


def simulate(
    durations: dict[tuple[str, str], float], gpus: int, *, ahead: int, late: tuple[str, float] | None = None
) -> tuple[float, float | None]:
    """Wall-clock of the dispatch queue on ``gpus`` workers; returns (makespan_s, the late run's wait_s).

    ``durations``: (run, category) -> seconds. One user requests every run at time 0, except
    ``late = (run, t)``: another user's run requested at ``t`` (its jobs are in ``durations``
    too), whose wait is from the request to its first job's start. Events: a worker that is
    free claims the head of the broker's line, and each claim and each finished job lets the
    dispatcher top the line up to ``ahead`` jobs in ``fair_order`` (``ahead`` = everything:
    all jobs sent at once, i.e. one FIFO line).
    """
    from leaderboard.services.dispatch import HeldJob, fair_order

    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    runs = sorted({run for run, _ in durations})
    run_ids = {run: i for i, run in enumerate(runs)}
    late_id = run_ids[late[0]] if late else None
    jobs: dict[int, HeldJob] = {}
    for i, (run, category) in enumerate(sorted(durations)):
        is_late = run_ids[run] == late_id
        created = t0 + timedelta(seconds=late[1] if is_late else 0, microseconds=run_ids[run])
        jobs[i] = HeldJob(pk=i, run_id=run_ids[run], user_id=2 if is_late else 1, run_created_at=created,
                          category_key=category)  # fmt: skip
    seconds = {i: durations[(runs[j.run_id], j.category_key)] for i, j in jobs.items()}
    held = {i: j for i, j in jobs.items() if j.run_id != late_id}
    line: list[int] = []
    run_load: dict[int, int] = {}
    user_load: dict[int, int] = {}
    idle = list(range(gpus))
    events: list[tuple[float, int, str, int]] = []  # (time, order, kind, job)
    if late:
        heapq.heappush(events, (late[1], 0, "arrive", -1))
    state = {"now": 0.0, "first_late": None, "last_end": 0.0, "order": 1}

    def top_up() -> None:
        for job in fair_order(list(held.values()), run_load=run_load, user_load=user_load,
                              limit=max(0, ahead - len(line))):  # fmt: skip
            del held[job.pk]
            line.append(job.pk)
            run_load[job.run_id] = run_load.get(job.run_id, 0) + 1
            user_load[job.user_id] = user_load.get(job.user_id, 0) + 1

    def claim_all() -> None:
        while idle and line:
            idle.pop()
            job = line.pop(0)
            if jobs[job].run_id == late_id and state["first_late"] is None:
                state["first_late"] = state["now"]
            state["order"] += 1
            heapq.heappush(events, (state["now"] + seconds[job], state["order"], "end", job))
            top_up()  # a claim sends the next job

    top_up()
    claim_all()
    while events:
        at, _, kind, job = heapq.heappop(events)
        state["now"] = at
        if kind == "arrive":
            held.update({i: j for i, j in jobs.items() if j.run_id == late_id})
        else:
            state["last_end"] = at
            run_load[jobs[job].run_id] -= 1
            user_load[jobs[job].user_id] -= 1
            idle.append(0)
        top_up()
        claim_all()
    assert not held and not line, "jobs left behind"
    wait = None if late is None else state["first_late"] - late[1]
    return state["last_end"], wait


def _duration(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--decode-ms", type=float, help="CPU ms per image to decode + resize (default: measure)")
    parser.add_argument("--loader-threads", type=int, default=4,
                        help="decoding threads of a job (make_loader uses up to 4, one per core)")  # fmt: skip
    parser.add_argument("--ahead", type=int, default=2)
    parser.add_argument("--measured", type=Path, help="JSON from benchmarks/epoch_timing.py (replaces estimates)")
    args = parser.parse_args()
    measured_all = json.loads(args.measured.read_text()) if args.measured else {}
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.pop("DATABASE_URL", None)
    import django

    django.setup()
    decode_cpu = args.decode_ms if args.decode_ms is not None else measure_decode_ms()
    decode = decode_cpu / max(1, args.loader_threads)
    print(f"decode + resize to 256 of a 1024 px image: {decode_cpu:.1f} ms CPU "
          f"({'given' if args.decode_ms is not None else 'MEASURED here'}); "
          f"{decode:.1f} ms per image with {args.loader_threads} loader threads")  # fmt: skip
    print("\nGPU-hours of a full VADI re-benchmark (27 categories, one seed):\n")
    print("| algorithm | status | figures | MVTec AD h | VisA h | VADI GPU-h | longest job h | jobs at the 2 h cap |")
    print("|---|---|---|---|---|---|---|---|")
    durations: dict[str, dict[tuple[str, str], float]] = {"present": {}, "all": {}}
    for s in SCHEDULES:
        s = with_registry_schedule(s)
        measured = measured_all.get(s.name)
        per = {key: job_seconds(s, n_train, n_test, decode, measured) for key, n_train, n_test in CATEGORIES}
        capped = sum(1 for _, n_train, _ in CATEGORIES if is_capped(s, n_train, decode, measured))
        mvtec = sum(v for k, v in per.items() if k.startswith("mvtec/")) / 3600
        visa = sum(v for k, v in per.items() if k.startswith("visa/")) / 3600
        kind = f"measured ({measured['device']})" if measured else "estimate"
        print(f"| {s.name} | {'registered' if s.present else 'coming'} | {kind} | {mvtec:.1f} | {visa:.1f} | "
              f"{mvtec + visa:.1f} | {max(per.values()) / 3600:.2f} | {capped} |")  # fmt: skip
        for key, seconds in per.items():
            durations["all"][(s.name, key)] = seconds
            if s.present:
                durations["present"][(s.name, key)] = seconds
    n_present = len({name for name, _ in durations["present"]})
    labels = ((f"the {n_present} registered", durations["present"]), (f"all {len(SCHEDULES)}", durations["all"]))
    for label, table in labels:
        total = sum(table.values()) / 3600
        print(f"\n{label}: {len(table)} jobs, {total:.0f} GPU-hours (estimate)")
        print(
            f"| GPUs | wall-clock (fair dispatch, ahead {args.ahead}) | a one-method repeat asked half-way "
            "waits | with one FIFO line it would wait |"
        )
        print("|---|---|---|---|")
        everything = 10**9
        for gpus in (1, 8, 64):
            makespan, _ = simulate(table, gpus, ahead=args.ahead)
            # Another admin repeats one method (PatchCore, 27 short jobs) half-way through.
            repeat = {("~repeat", key): seconds for (name, key), seconds in table.items() if name == "patchcore"}
            late = ("~repeat", makespan / 2)
            _, wait = simulate({**table, **repeat}, gpus, ahead=args.ahead, late=late)
            _, fifo_wait = simulate({**table, **repeat}, gpus, ahead=everything, late=late)
            print(f"| {gpus} | {makespan / 3600:.1f} h ({makespan / 86400:.2f} days) | {_duration(wait)} | "
                  f"{_duration(fifo_wait)} |")  # fmt: skip


if __name__ == "__main__":
    main()
