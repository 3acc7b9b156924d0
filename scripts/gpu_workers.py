#!/usr/bin/env python3
"""Start one Celery benchmark worker per GPU of this machine, and keep them together.

    python scripts/gpu_workers.py [--gpus 0,1 | --cpu-workers N] [--dry-run] [-- EXTRA CELERY OPTIONS]

The command of the GPU worker image (``docker-compose.yml``, ``docker-compose.gpu.yml``) and of
``make worker-gpu``. Which GPUs: ``--gpus``, else ``VADI_GPUS``, else ``CUDA_VISIBLE_DEVICES``,
else every GPU that ``nvidia-smi -L`` lists. For each GPU it starts::

    CUDA_VISIBLE_DEVICES=<that GPU> VADI_DEVICE=cuda:0 \\
    celery -A config worker -Q <VADI_QUEUE_BENCHMARKS> --concurrency 1 --prefetch-multiplier 1 \\
        --max-tasks-per-child 1 -n gpu<i>@<host>

so each process sees one GPU (as ``cuda:0``), takes one benchmark job at a time and runs each job
in a fresh child process (all GPU memory is returned between jobs; CUDA is never initialised in
the parent, so forking is safe). ``--cpu-workers N`` starts N such workers on the CPU instead
(``VADI_DEVICE=cpu``), for a machine without a GPU.

SIGTERM and SIGINT are passed on to every worker (Celery's warm shutdown: each finishes or gives
back its job; a job cut short by a later SIGKILL is requeued by the sweeper once its heartbeat
stops). When one worker exits, the others are stopped and this script exits with that worker's
status, so that a container supervisor restarts the whole set. Needs only the environment of the
settings: the broker and database URLs, the dataset roots and the model cache (see README).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: Values of CUDA_VISIBLE_DEVICES that hide every GPU.
NO_GPU_VALUES = {"", "-1", "none", "NoDevFiles", "void"}


class NoGpuError(RuntimeError):
    """No GPU was named and none was found."""


def parse_gpu_list(text: str) -> list[str]:
    """``"0,1"`` or ``"GPU-8f2e...,GPU-1a2b..."`` -> the ids, in order; an empty list for "no GPU"."""
    if text.strip() in NO_GPU_VALUES:
        return []
    ids = [part.strip() for part in text.split(",")]
    if any(not part for part in ids):
        raise ValueError(f"GPU list {text!r} has an empty entry")
    if len(set(ids)) != len(ids):
        raise ValueError(f"GPU list {text!r} names a GPU twice")
    return ids


def discover_gpus(environ: Mapping[str, str]) -> list[str]:
    """The GPUs to serve: ``VADI_GPUS``, else ``CUDA_VISIBLE_DEVICES``, else ``nvidia-smi -L``'s indices."""
    for name in ("VADI_GPUS", "CUDA_VISIBLE_DEVICES"):
        if name in environ:
            gpus = parse_gpu_list(environ[name])
            if not gpus:
                raise NoGpuError(f"{name}={environ[name]!r} names no GPU")
            return gpus
    smi = shutil.which("nvidia-smi")
    if smi is None:
        raise NoGpuError(
            "no GPU found: nvidia-smi is not installed and neither VADI_GPUS nor CUDA_VISIBLE_DEVICES is set "
            "(use --cpu-workers N on a machine without a GPU)"
        )
    proc = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=60)
    indices = re.findall(r"^GPU (\d+):", proc.stdout, flags=re.MULTILINE)
    if proc.returncode != 0 or not indices:
        raise NoGpuError(f"no GPU found: `nvidia-smi -L` said {(proc.stdout + proc.stderr).strip()!r}")
    return indices


def worker_plans(
    devices: Sequence[str], *, cpu: bool, environ: Mapping[str, str], extra: Sequence[str] = ()
) -> list[dict]:
    """One ``{"name", "env", "argv"}`` per worker: the environment additions and the command line."""
    queue = environ.get("VADI_QUEUE_BENCHMARKS") or "benchmarks"
    host = socket.gethostname()
    plans = []
    for i, device in enumerate(devices):
        kind = "cpu" if cpu else "gpu"
        name = f"{kind}{i}@{host}"
        env = {"VADI_DEVICE": "cpu"} if cpu else {"CUDA_VISIBLE_DEVICES": device, "VADI_DEVICE": "cuda:0"}
        argv = [
            sys.executable, "-m", "celery", "-A", "config", "worker", "--loglevel=INFO", "-Q", queue,
            "--concurrency=1", "--prefetch-multiplier=1", "--max-tasks-per-child=1", "-n", name, *extra,
        ]  # fmt: skip
        plans.append({"name": name, "device": device, "env": env, "argv": argv})
    return plans


def supervise(plans: Sequence[dict], environ: Mapping[str, str]) -> int:
    """Start every worker, pass on SIGTERM/SIGINT, stop all when one exits; returns the exit status."""
    procs: list[subprocess.Popen] = []
    stopping = False

    def stop_all(signum: int = signal.SIGTERM) -> None:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signum)

    def on_signal(signum, _frame) -> None:
        nonlocal stopping
        stopping = True
        stop_all(signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    for plan in plans:
        print(f"gpu_workers: starting {plan['name']} on {plan['env']}", flush=True)
        procs.append(subprocess.Popen(plan["argv"], cwd=ROOT, env={**environ, **plan["env"]}))
    status = 0
    while any(proc.poll() is None for proc in procs):
        exited = [proc for proc in procs if proc.poll() is not None]
        if exited and not stopping:
            stopping = True
            status = exited[0].returncode or 1
            print(f"gpu_workers: a worker exited with status {exited[0].returncode}; stopping the others", flush=True)
            stop_all()
        time.sleep(0.5)
    if not status:
        status = next((proc.returncode for proc in procs if proc.returncode not in (0, -signal.SIGTERM)), 0)
    return status if status >= 0 else 128 - status


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--gpus", help="GPU ids to serve, comma-separated (default: VADI_GPUS, CUDA_VISIBLE_DEVICES, nvidia-smi)"
    )
    group.add_argument("--cpu-workers", type=int, metavar="N", help="start N workers on the CPU instead")
    parser.add_argument("--dry-run", action="store_true", help="print the workers' plans as JSON and exit")
    parser.add_argument("extra", nargs="*", help="more `celery worker` options, after --")
    args = parser.parse_args(argv)
    environ = dict(os.environ)
    try:
        if args.cpu_workers is not None:
            if args.cpu_workers < 1:
                raise ValueError(f"--cpu-workers must be at least 1, got {args.cpu_workers}")
            devices, cpu = ["cpu"] * args.cpu_workers, True
        else:
            devices = parse_gpu_list(args.gpus) if args.gpus is not None else discover_gpus(environ)
            if not devices:
                raise NoGpuError(f"--gpus {args.gpus!r} names no GPU")
            cpu = False
    except (NoGpuError, ValueError) as exc:
        print(f"gpu_workers: {exc}", file=sys.stderr)
        return 2
    plans = worker_plans(devices, cpu=cpu, environ=environ, extra=args.extra)
    if args.dry_run:
        print(json.dumps(plans, indent=2))
        return 0
    return supervise(plans, environ)


if __name__ == "__main__":
    sys.exit(main())
