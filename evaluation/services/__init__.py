"""Worker-side services: claim a job, validate and score it, record results via ``leaderboard``.

Import from the submodules (``evaluation.services.submissions``, ``evaluation.services.benchmarks``);
they are imported lazily by the Celery tasks so that the web process never pays for them.
"""
