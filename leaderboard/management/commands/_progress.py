"""A terminal progress bar over re-benchmark jobs for ``setup_demo`` and ``rebenchmark --wait``.

``job_progress_bar`` polls ``selectors.jobs.benchmark_job_progress`` from a background thread
(its own database connection) and draws "k of N jobs" with tqdm's rate and time estimate, also
while eager tasks (no broker: the demo) train in the calling thread. Quiet when the stream is not
a terminal (CI, logs, tests): tqdm's ``disable=None``; the commands' line output stays as it was.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Iterator

from django.db import OperationalError, connection
from django.utils import timezone
from tqdm import tqdm

from leaderboard.selectors.jobs import benchmark_job_progress


@contextlib.contextmanager
def job_progress_bar(*, run_ids=None, poll_s: float = 1.0, stream=None) -> Iterator[None]:
    """Draw the jobs of ``run_ids`` (default: of runs created inside the block) until the block ends."""
    stream = stream or sys.stderr
    if not getattr(stream, "isatty", lambda: False)():
        yield
        return
    since = timezone.now() if run_ids is None else None
    stop = threading.Event()

    def poll() -> None:
        with tqdm(total=0, unit="job", desc="re-benchmark", file=stream, dynamic_ncols=True, disable=None) as bar:
            try:
                while True:
                    try:
                        finished, total, message = benchmark_job_progress(run_ids=run_ids, created_since=since)
                    except OperationalError:  # SQLite busy while the eager task writes: next poll
                        finished, total, message = bar.n, bar.total, ""
                    if total != bar.total:
                        bar.total = total
                        bar.refresh()
                    bar.update(finished - bar.n)
                    if message:
                        bar.set_postfix_str(message[:60])
                    if stop.wait(poll_s):
                        break
            finally:
                connection.close()

    thread = threading.Thread(target=poll, name="job-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)
