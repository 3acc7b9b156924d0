"""The Celery task names, defined once.

The tasks live in ``evaluation.tasks`` and register under these names; the leaderboard enqueues
them by name (``services.jobs.job_enqueue``) without importing them, and the settings schedule
the sweeper by name. Plain constants, importable before Django is set up (the settings use one).
"""

#: Validate and score one uploaded bundle (argument: the submission's pk).
SCORE_SUBMISSION_TASK = "evaluation.score_submission"
#: Train and evaluate one (benchmark run, category) job (argument: the job's pk).
RUN_BENCHMARK_JOB_TASK = "evaluation.run_benchmark_job"
#: Requeue or fail jobs whose worker stopped sending heartbeats (Celery beat, every minute or so).
SWEEP_STALE_JOBS_TASK = "evaluation.sweep_stale_jobs"
#: Broker -> worker -> database round trip.
HEALTH_CHECK_TASK = "evaluation.health_check"
