"""Worker-side services: claim a job, validate and score it, hand the values to ``leaderboard``.

Import from the submodules (``evaluation.services.submissions``, ``evaluation.services.benchmarks``);
they are imported lazily by the Celery tasks so that the web process never pays for them. They
write no row: every write of a job, a run or a result is a ``leaderboard.services`` call.
"""
