"""Shared timing rules of ``benchmarks/peer_*.py``: one thread, alternating sides, best of N.

The clock is the process's CPU time (``time.process_time``: user + system time of all its
threads), which with one compute thread is the work done, not the time spent waiting for a
core: on the shared 2-core machine (load averages of 10-15) wall-clock repetitions of the same
call varied by up to 1.5x, CPU time by a few per cent. On a shared machine slower repetitions
still measure the other processes (caches, memory bandwidth; timeit's rule), so each side's
fastest repetition is reported, and the two sides alternate within every repetition so that
background load falls on both alike.
"""

from __future__ import annotations

import time
from collections.abc import Callable


def best_of(sides: dict[str, Callable[[], object]], repeats: int = 5, warmup: int = 1) -> dict[str, float]:
    """Fastest CPU time in seconds of each side's callable over ``repeats`` alternating rounds."""
    for _ in range(warmup):
        for fn in sides.values():
            fn()
    best = dict.fromkeys(sides, float("inf"))
    names = list(sides)
    for repeat in range(repeats):
        for name in names if repeat % 2 == 0 else reversed(names):
            start = time.process_time()
            sides[name]()
            best[name] = min(best[name], time.process_time() - start)
    return best


def report(title: str, rows: list[tuple[str, float, float]]) -> None:
    """Print a Markdown table: measure, ours, anomalib, ours / anomalib (CPU milliseconds)."""
    print(f"\n{title}\n")
    print("| measure | ours | anomalib 2.7.0 | ours / anomalib |")
    print("|---|---|---|---|")
    for measure, ours, theirs in rows:
        print(f"| {measure} | {ours * 1e3:.1f} ms | {theirs * 1e3:.1f} ms | {ours / theirs:.2f}x |")
