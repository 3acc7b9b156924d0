"""A site holding every kind of private and published thing, written through the services, and its markers.

``build_world(catalog)`` makes, on the test catalog's VADI categories:

* published: a reproduced run of "Patch Core Public" (one category failed with an internal
  error that names a server path), and a public submission by ``bob-zqpub`` of "Bob Public Net";
* the owner ``alice-zqowner``'s private, held-for-review, rejected, failed (server error and
  invalid bundle) and queued submissions, each under its own method;
* a running re-benchmark with recorded but unpublished results, a run where every category
  failed, and a registered method with no result at all.

Each hidden thing carries marker strings (names, keys, usernames, error texts, values as the
site prints them) listed in ``World.secrets``: who may see which is the visibility rule
(``selectors.visibility``). Users: ``alice`` (owner), ``carol`` (another user), ``staff``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rest_framework.authtoken.models import Token

from leaderboard.models import BenchmarkJob, JobStatus, Provenance, Result, Visibility
from leaderboard.services.benchmark_jobs import (
    BENCHMARK_JOBS,
    benchmark_job_claim,
    benchmark_job_complete,
    benchmark_job_progress,
)
from leaderboard.services.localisation import localisation_record
from leaderboard.services.ownership import submission_withdraw
from leaderboard.services.results import result_record
from leaderboard.services.submissions import (
    SUBMISSION_JOBS,
    submission_fail,
    submission_finish,
    submission_review,
)

from .conftest import METRICS, publish_submission
from .factories import BenchmarkRunFactory, MethodFactory, SubmissionFactory, UserFactory

#: A server path and an exception class that an internal failure mentions: staff only, ever.
SERVER_PATH = "/srv/zq-secret-root/ground_truth/crack/003_mask.png"
INTERNAL_ERROR = f"DatasetError: {SERVER_PATH}: zq-internal-text masks must be lossless"
#: Settings' names and tracebacks are internal too.
INTERNAL_EXTRA = "set VADI_ZQ_SECRET_ROOT; Traceback (most recent call last):"


def shown(value: float) -> list[str]:
    """The forms in which the site prints a metric value (JSON/CSV repr, 3 and 4 decimals)."""
    return [repr(value), f"{value:.3f}", f"{value:.4f}"]


@dataclass
class World:
    users: dict
    tokens: dict
    submissions: dict
    runs: dict
    methods: dict
    #: marker -> the roles that may see it (roles: anonymous, owner, other, staff)
    secrets: dict[str, set[str]] = field(default_factory=dict)

    def hide(self, markers, *, seen_by: set[str]) -> None:
        for marker in markers:
            self.secrets[str(marker)] = set(seen_by)


def _finish(submission, values, *, flagged: str = ""):
    """Score ``submission`` through the worker-side services (claim state, lease, finish)."""
    SubmissionFactory._meta.model.objects.filter(pk=submission.pk).update(
        status=JobStatus.SCORING, celery_task_id=f"task-{submission.pk}"
    )
    lease = SUBMISSION_JOBS.lease(submission.pk, f"task-{submission.pk}")
    return submission_finish(
        lease, results=values, extra={}, evaluator_version="test-eval", flagged_reason=flagged, summary="scored"
    )


def _fail(submission, message: str, *, invalid_bundle: bool = False) -> None:
    SubmissionFactory._meta.model.objects.filter(pk=submission.pk).update(
        status=JobStatus.VALIDATING, celery_task_id=f"task-{submission.pk}"
    )
    submission_fail(
        SUBMISSION_JOBS.lease(submission.pk, f"task-{submission.pk}"), message=message, invalid_bundle=invalid_bundle
    )


def _per_category(categories, value: float) -> dict:
    return {c.key: dict.fromkeys(METRICS, value) for c in categories}


def _run_jobs(run, outcomes) -> None:
    """Create the run's jobs, then claim and complete each through the services (the last one publishes)."""
    jobs = [(BenchmarkJob.objects.create(run=run, category=cat), output, error) for cat, output, error in outcomes]
    for job, output, error in jobs:
        assert benchmark_job_claim(job_id=job.pk, task_id=f"job-{job.pk}") is not None
        benchmark_job_complete(BENCHMARK_JOBS.lease(job.pk, f"job-{job.pk}"), output=output, error=error)


def localisation_doc(defect_type: str) -> dict:
    """A runner's ``localisation`` document: one anomaly of ``defect_type``, found at the 13th threshold."""
    ious = [round(0.02 * k, 2) for k in range(25)]
    return {
        "pl": 1.0, "iou_limit": 0.3, "threshold": 0.5, "threshold_index": 24, "size": 256,
        "thresholds": [round(0.02 * k, 2) for k in range(25)],
        "anomalies": [{"image_index": 0, "image_id": "test/zq/000.png", "defect_type": defect_type, "center_x": 10.0,
                       "center_y": 10.0, "width": 32.0, "height": 32.0, "angle": 0.0, "best_iou": 0.48, "iou": 0.48,
                       "localised": True, "ious": ious}],
    }  # fmt: skip


def _ok_output(category, value: float) -> dict:
    return {
        "localisation": {"anomaly_map": localisation_doc("public-defect")},
        "schema": "vadi-run/1",
        "status": "ok",
        "category": category.key,
        "primary_variant": "anomaly_map",
        "evaluator_version": "test-eval",
        "metrics": {"anomaly_map": dict.fromkeys(METRICS, value)},
        "timings": {"train_seconds": 12.0, "inference_seconds": 3.0},
    }


def _failed_output(category) -> dict:
    return {
        "schema": "vadi-run/1",
        "status": "failed",
        "category": category.key,
        "error": f"{INTERNAL_ERROR} ({INTERNAL_EXTRA})",
        "traceback": f'Traceback (most recent call last):\n  File "{SERVER_PATH}", line 1\n{INTERNAL_ERROR}',
    }


def build_world(catalog) -> World:
    cats = catalog["categories"]["mvtec"] + catalog["categories"]["visa"]
    vadi = catalog["suites"]["vadi"]
    alice = UserFactory(username="alice-zqowner")
    bob = UserFactory(username="bob-zqpub")
    carol = UserFactory(username="carol-zqother")
    staff = UserFactory(username="staff-zqadmin", is_staff=True, is_superuser=True)
    tokens = {name: Token.objects.create(user=user) for name, user in (("alice", alice), ("carol", carol))}
    world = World(
        users={"alice": alice, "bob": bob, "carol": carol, "staff": staff},
        tokens=tokens,
        submissions={},
        runs={},
        methods={},
    )
    owner_and_staff = {"owner", "staff"}
    staff_only = {"staff"}

    # Published: a reproduced run (one category failed inside the server) and bob's upload.
    patch = MethodFactory(key="patch-core-public", name="Patch Core Public", algorithm_key="patchcore")
    run = BenchmarkRunFactory(method=patch, status=JobStatus.QUEUED, progress=0.0)
    _run_jobs(
        run,
        [(c, _ok_output(c, 0.5), "") for c in cats[:-1]]
        + [(cats[-1], _failed_output(cats[-1]), f"{INTERNAL_ERROR} ({INTERNAL_EXTRA})")],
    )
    run.refresh_from_db()
    assert run.is_published and run.status == JobStatus.DONE, run.error_message
    world.runs["published"] = run
    world.methods["public"] = patch
    bob_method = MethodFactory(key="bob-public-net", name="Bob Public Net", owner=bob)
    world.submissions["bob"] = publish_submission(bob_method, cats, {m: [0.6] * 5 for m in METRICS}, owner=bob)

    # The owner's hidden submissions, each under its own method.
    def alice_method(label: str):
        method = MethodFactory(key=f"zq-{label}-method", name=f"ZQ {label.title()} Method", owner=alice)
        world.methods[label] = method
        world.hide([method.name, method.key], seen_by=owner_and_staff)
        return method

    private = SubmissionFactory(
        owner=alice, method=alice_method("private"), suite=vadi, visibility=Visibility.PRIVATE, status=JobStatus.QUEUED
    )
    _finish(private, _per_category(cats, 0.8127))
    world.hide(shown(0.8127), seen_by=owner_and_staff)

    held = SubmissionFactory(owner=alice, method=alice_method("held"), suite=vadi, status=JobStatus.QUEUED)
    _finish(held, _per_category(cats, 0.7261), flagged="zq-review-reason maps match the ground truth too well")
    world.hide([*shown(0.7261), "zq-review-reason"], seen_by=owner_and_staff)

    rejected = SubmissionFactory(owner=alice, method=alice_method("rejected"), suite=vadi, status=JobStatus.QUEUED)
    _finish(rejected, _per_category(cats, 0.6389))
    submission_review(submission=rejected, approve=False, reviewer=staff, note="zq-reject-note")
    world.hide(shown(0.6389), seen_by=owner_and_staff)
    world.hide(["zq-reject-note"], seen_by=owner_and_staff)

    failed = SubmissionFactory(owner=alice, method=alice_method("failed"), suite=vadi, status=JobStatus.QUEUED)
    _fail(failed, f"Server error while scoring ({INTERNAL_ERROR}) zq-failure-text ({INTERNAL_EXTRA})")
    world.hide(["zq-failure-text"], seen_by=owner_and_staff)

    invalid = SubmissionFactory(owner=alice, method=alice_method("invalid"), suite=vadi, status=JobStatus.QUEUED)
    _fail(invalid, "manifest.json: zq-bundle-text is not valid JSON", invalid_bundle=True)
    world.hide(["zq-bundle-text"], seen_by=owner_and_staff)

    queued = SubmissionFactory(
        owner=alice,
        method=alice_method("queued"),
        suite=vadi,
        status=JobStatus.QUEUED,
        progress=0.0,
        progress_message="queued for scoring",
        description="zq-queued-description",
    )
    world.hide(["zq-queued-description"], seen_by=owner_and_staff)
    # Published, then withdrawn by its owner: its results left the board; the history stays private.
    withdrawn = SubmissionFactory(owner=alice, method=alice_method("withdrawn"), suite=vadi, status=JobStatus.QUEUED)
    _finish(withdrawn, _per_category(cats, 0.5843))
    submission_withdraw(submission=withdrawn, actor=alice, note="zq-withdraw-note")
    world.hide([*shown(0.5843), "zq-withdraw-note"], seen_by=owner_and_staff)
    world.submissions.update(
        private=private,
        held=held,
        rejected=rejected,
        failed=failed,
        invalid=invalid,
        queued=queued,
        withdrawn=withdrawn,
    )
    world.hide([alice.username, tokens["alice"].key], seen_by=owner_and_staff)
    world.hide([tokens["carol"].key], seen_by={"other", "staff"})

    # Staff-only: a running re-benchmark with recorded values, a run that failed everywhere, a
    # registered method without results.
    running_method = MethodFactory(key="zq-running-method", name="ZQ Running Method", algorithm_key="zq_running")
    running = BenchmarkRunFactory(method=running_method, status=JobStatus.RUNNING, progress=0.5)
    job = BenchmarkJob.objects.create(run=running, category=cats[0])
    benchmark_job_claim(job_id=job.pk, task_id="running-task")
    benchmark_job_progress(
        BENCHMARK_JOBS.lease(job.pk, "running-task"),
        run_id=running.pk,
        category=cats[0].key,
        progress=0.5,
        message=f"epoch 2/4 zq-running-progress {SERVER_PATH}",
    )
    for metric in METRICS:
        result_record(
            method=running_method,
            category=cats[0],
            metric=metric,
            value=0.9173,
            provenance=Provenance.REPRODUCED,
            evaluator_version="test-eval",
            benchmark_run=running,
        )
    localisation_record(
        result=Result.objects.get(benchmark_run=running, metric="pl"), document=localisation_doc("zq-running-defect")
    )
    world.runs["running"] = running
    world.methods["running"] = running_method
    world.hide(
        [running_method.name, running_method.key, "zq-running-progress", "zq-running-defect", *shown(0.9173)],
        seen_by=staff_only,
    )

    failed_method = MethodFactory(key="zq-failed-run-method", name="ZQ Failed Run Method", algorithm_key="zq_failing")
    failed_run = BenchmarkRunFactory(method=failed_method, status=JobStatus.QUEUED, progress=0.0)
    _run_jobs(failed_run, [(cats[0], _failed_output(cats[0]), "zq-failed-run-text: out of memory")])
    failed_run.refresh_from_db()
    assert failed_run.status == JobStatus.FAILED and not failed_run.is_published
    world.runs["failed"] = failed_run
    world.methods["failed_run"] = failed_method
    world.hide([failed_method.name, failed_method.key, "zq-failed-run-text"], seen_by=staff_only)

    lonely = MethodFactory(key="zq-lonely-method", name="ZQ Lonely Method", algorithm_key="zq_lonely")
    world.methods["lonely"] = lonely
    world.hide([lonely.name, lonely.key], seen_by=staff_only)

    # What only staff ever read: the internal detail of failures.
    world.hide(["zq-secret-root", "DatasetError", "VADI_ZQ_SECRET_ROOT", "Traceback"], seen_by=staff_only)
    return world
