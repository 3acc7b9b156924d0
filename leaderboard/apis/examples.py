"""Example answers of the API, shown on the docs pages (``/api/v1/docs/``, ``/api/v1/redoc/``).

Shaped like real answers of the demo site (trimmed); ``leaderboard/tests/test_api_schema.py``
checks each against its operation's response schema, so an example cannot drift from the API.
List operations show them inside their page (``count``, ``next``, ``previous``, ``results``).
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiExample


def response(name: str, value, *, description: str = "", status: int | None = None) -> OpenApiExample:
    return OpenApiExample(
        name,
        value=value,
        description=description,
        response_only=True,
        status_codes=[str(status)] if status else None,
    )


def request(name: str, value, *, description: str = "", media_type: str | None = None) -> OpenApiExample:
    return OpenApiExample(name, value=value, description=description, request_only=True, media_type=media_type)


def error(status: int, code: str, message: str, details=None) -> OpenApiExample:
    """An answer in the API's error format (``apis.errors``)."""
    return response(code, {"error": {"code": code, "message": message, "details": details}}, status=status)


def _aggregate(mean: float, std: float, n: int = 27) -> dict:
    return {"mean": mean, "std": std, "n_categories": n}


METRICS = [
    {"key": "image_auroc", "short_name": "I-AUC", "display_name": "Image AUROC", "higher_is_better": True,
     "range": [0.0, 1.0]},
    {"key": "pixel_auroc", "short_name": "P-AUC", "display_name": "Pixel AUROC", "higher_is_better": True,
     "range": [0.0, 1.0]},
    {"key": "aupro", "short_name": "AUPRO", "display_name": "AUPRO (FPR ≤ 0.3)", "higher_is_better": True,
     "range": [0.0, 1.0]},
    {"key": "pl", "short_name": "PL", "display_name": "Proportion Localised", "higher_is_better": True,
     "range": [0.0, 1.0]},
]  # fmt: skip

LEADERBOARD = response(
    "VADI, ranked by PL",
    {
        "suite": {"key": "vadi", "name": "VADI (MVTec AD + VisA)"},
        "dataset": None,
        "n_categories": 27,
        "categories": ["mvtec/bottle", "mvtec/cable", "...", "visa/pipe_fryum"],
        "metrics": METRICS,
        "sort_metric": "pl",
        "aggregation": "mean over categories, each weighted equally; std = population std (ddof=0) across categories",
        "provenance": None,
        "evaluator_version": "vadi-eval-1.0@256",
        "evaluator_versions": ["vadi-eval-1.0@256"],
        "ranked": [
            {
                "rank": 1,
                "method": {"key": "patchcore", "name": "PatchCore", "is_baseline": False},
                "complete": True,
                "n_categories": 27,
                "metrics": {
                    "image_auroc": _aggregate(0.962, 0.041),
                    "pixel_auroc": _aggregate(0.981, 0.012),
                    "aupro": _aggregate(0.914, 0.052),
                    "pl": _aggregate(0.583, 0.171),
                },
                "provenances": ["reproduced"],
                "benchmark_runs": [7],
                "submissions": [],
                "reproduced_preferred_in": 0,
                "schedule_incomplete": [],
                "random_init": False,
                "n_seeds": 1,
                "seed_std": {},
                "cost": {
                    "inference_ms_per_image": 41.7,
                    "train_seconds_per_category": 63.0,
                    "peak_memory_mb": 5120.0,
                    "peak_memory_measure": "CUDA max memory allocated",
                    "params_total": 68_951_464,
                    "params_trainable": 0,
                    "hardware": ["NVIDIA A100-SXM4-80GB"],
                },
            }
        ],
        "incomplete": [],
        "notes": [],
    },
)

DATASET = response(
    "MVTec AD",
    {
        "key": "mvtec",
        "name": "MVTec AD",
        "description": "15 categories of industrial objects and textures (Bergmann et al., CVPR 2019).",
        "url": "https://www.mvtec.com/company/research/datasets/mvtec-ad",
        "n_categories": 15,
    },
)

SUITE = response(
    "VADI",
    {
        "key": "vadi",
        "name": "VADI (MVTec AD + VisA)",
        "description": "The 27 categories of MVTec AD (15) and VisA (12), every category weighted equally.",
        "n_categories": 27,
        "categories": ["mvtec/bottle", "mvtec/cable", "...", "visa/pipe_fryum"],
    },
)

CATEGORY = response("mvtec/bottle", {"key": "mvtec/bottle", "name": "bottle", "dataset": "mvtec"})

CATEGORY_DETAIL = response(
    "mvtec/bottle", {"key": "mvtec/bottle", "name": "bottle", "dataset": "mvtec", "n_test_ids": 83}
)

CATEGORY_TEST_IDS = response(
    "mvtec/bottle",
    {
        "category": "mvtec/bottle",
        "count": 3,
        "test_ids": [
            "0b9c1f4e7a2d5c8b3e6f1a4d7c0b9e2f",
            "5e8a1d4c7b0f3e6a9d2c5b8e1f4a7d0c",
            "c3f6a9d2e5b8c1f4a7d0e3b6c9f2a5d8",
        ],
    },
    description="Trimmed: a real answer lists every test image of the category.",
)

CATEGORY_TEST_FILES = response(
    "mvtec/bottle",
    {
        "category": "mvtec/bottle",
        "count": 2,
        "files": {
            "0b9c1f4e7a2d5c8b3e6f1a4d7c0b9e2f": "test/good/011.png",
            "5e8a1d4c7b0f3e6a9d2c5b8e1f4a7d0c": "test/broken_large/003.png",
        },
    },
    description="Trimmed: a real answer lists every test image of the category.",
)

_METHOD = {
    "key": "patchcore",
    "name": "PatchCore",
    "family": "memory_bank",
    "secondary_family": "",
    "description": "Locally aware patch features of a frozen ImageNet CNN, subsampled into a greedy coreset memory "
    "bank; anomaly = distance to the nearest normal patch.",
    "authors": "Karsten Roth, Latha Pemula, Joaquin Zepeda, Bernhard Schölkopf, Thomas Brox, Peter Gehler",
    "paper_title": "Towards Total Recall in Industrial Anomaly Detection",
    "paper_url": "https://arxiv.org/abs/2106.08265",
    "code_url": "https://github.com/amazon-science/patchcore-inspection",
    "code_licence": "Apache-2.0",
    "deviations": "None in the default configuration.",
    "schedule": {"epochs": 1, "iterations": None, "batch_size": 8, "input_size": 256,
                 "optimizer": "none: one pass over the training images builds the bank"},
    "map_variants": ["anomaly_map"],
    "is_baseline": False,
}  # fmt: skip

METHOD = response("PatchCore", _METHOD)
METHOD_DETAIL = response("PatchCore", {**_METHOD, "reproducible": True})

RESULT = response(
    "PL of PatchCore on mvtec/bottle",
    {
        "id": 3,
        "method": "patchcore",
        "category": "mvtec/bottle",
        "dataset": "mvtec",
        "metric": "pl",
        "variant": "anomaly_map",
        "is_primary_variant": True,
        "value": 0.7458469920029053,
        "provenance": "reproduced",
        "evaluator_version": "vadi-eval-1.0@256",
        "benchmark_run": 7,
        "submission": None,
        "is_current": True,
        "created_at": "2026-11-30T14:27:38.013475Z",
        "schedule_complete": True,
        "pretrained": True,
        "seeds": [0],
        "seed_values": None,
        "cost": {
            "train_seconds": 63.0,
            "inference_seconds_per_image": 0.0417,
            "peak_memory_mb": 5120.0,
            "peak_memory_measure": "CUDA max memory allocated",
            "params_total": 68951464,
            "params_trainable": 0,
            "hardware": "NVIDIA A100-SXM4-80GB",
            "device": "cuda:0",
        },
    },
)

_SUBMISSION = {
    "id": 42,
    "uuid": "0b7e3c55-2f1d-4c3e-9a58-6f0d2b1e9c47",
    "method": "my-method",
    "suite": "vadi",
    "owner": "alice",
    "visibility": "public",
    "status": "done",
    "progress": 1.0,
    "progress_message": "scored 27 categories",
    "error_message": "",
    "review_status": "none",
    "description": "Our method, trained as in the paper.",
    "created_at": "2026-11-30T14:30:02.118273Z",
    "started_at": "2026-11-30T14:30:03.002811Z",
    "finished_at": "2026-11-30T14:31:40.530174Z",
    "results_url": "https://leaderboard.example.org/api/v1/results/?submission=42&current=false",
    "withdrawn_at": None,
}

SUBMISSION = response("scored", _SUBMISSION)
SUBMISSION_DETAIL = response(
    "scored",
    {
        **_SUBMISSION,
        "results": [
            {
                "category": "mvtec/bottle",
                "metrics": {"image_auroc": 0.998, "pixel_auroc": 0.981, "aupro": 0.912, "pl": 0.803},
                "is_current": True,
            }
        ],
    },
)

SUBMISSION_CREATED = response(
    "queued",
    {
        **_SUBMISSION,
        "status": "queued",
        "progress": 0.0,
        "progress_message": "queued for scoring",
        "started_at": None,
        "finished_at": None,
        "archive_size": 48213377,
        "archive_sha256": "5f1c0e8f2d7b4a3c9e6d1b0a8f7e6d5c4b3a29180f7e6d5c4b3a2918f7e6d5c4",
        "status_url": "https://leaderboard.example.org/submissions/42/",
        "api_url": "https://leaderboard.example.org/api/v1/submissions/42/",
    },
    status=201,
)

_RUN_CONFIG = {
    "config_name": "paper",
    "fingerprint": "d4d0a68c4b0e3d68",
    "spec": {"name": "patchcore", "algorithm": "patchcore", "categories": ["mvtec/bottle", "...", "visa/pipe_fryum"],
             "batch_size": 8, "epochs": 1, "iterations": None, "params": {}, "seeds": [0], "device": "auto",
             "train_time_limit_s": 7200.0, "evaluate_every": None, "save_checkpoint": False,
             "save_predictions": False},
}  # fmt: skip

_ENVIRONMENT = {
    "python": "3.11.7",
    "torch": "2.14.1+cu130",
    "timm": "1.0.31",
    "numpy": "2.4.6",
    "device": "cuda:0",
    "hardware": "NVIDIA H200",
    "commit": "38f297dcb29ee9aba2cfa463b12f1b9070c09d0e",
}

_RUN = {
    "id": 7,
    "method": "patchcore",
    "suite": "vadi",
    "status": "done",
    "progress": 1.0,
    "progress_message": "27/27 categories done",
    "error_message": "",
    "is_published": True,
    "commit": "38f297dcb29ee9aba2cfa463b12f1b9070c09d0e",
    "config": _RUN_CONFIG,
    "environment": _ENVIRONMENT,
    "created_at": "2026-11-30T14:27:23.282216Z",
    "started_at": "2026-11-30T14:27:38.098439Z",
    "finished_at": "2026-11-30T16:02:51.001246Z",
}

BENCHMARK_RUN = response("done", _RUN)

STAFF_BENCHMARK_RUN = response(
    "running",
    {
        **_RUN,
        "status": "running",
        "progress": 0.5,
        "progress_message": "1/2 categories done",
        "is_published": False,
        "finished_at": None,
        "jobs": [
            {
                "id": 31,
                "category": "mvtec/bottle",
                "status": "done",
                "progress": 1.0,
                "progress_message": "done",
                "error_message": "",
                "attempts": 1,
                "heartbeat_at": "2026-11-30T14:40:12.431002Z",
                "timings": {"train_seconds": 412.3, "inference_seconds": 21.7},
            },
            {
                "id": 32,
                "category": "mvtec/cable",
                "status": "running",
                "progress": 0.4,
                "progress_message": "epoch 1/1",
                "error_message": "",
                "attempts": 1,
                "heartbeat_at": "2026-11-30T14:47:55.006131Z",
                "timings": {},
            },
        ],
    },
)

STAFF_BENCHMARK_RUNS_REQUEST = request(
    "PatchCore and FastFlow on VADI",
    {"methods": ["patchcore", "fastflow"], "suites": ["vadi"], "config": "paper", "device": "auto"},
)

_QUEUED_JOB = {"status": "queued", "progress": 0.0, "progress_message": "", "heartbeat_at": None, "timings": {},
               "attempts": 0}  # fmt: skip

# One run of the answer's list (the schema shows it inside the list).
STAFF_BENCHMARK_RUNS_CREATED = response(
    "started",
    {
        **STAFF_BENCHMARK_RUN.value,
        "status": "queued",
        "progress": 0.0,
        "progress_message": "",
        "started_at": None,
        "jobs": [{**job, **_QUEUED_JOB} for job in STAFF_BENCHMARK_RUN.value["jobs"]],
    },
    status=201,
)

VALIDATION_VALID = response("valid", {"valid": True, "problems": []}, status=200)
VALIDATION_PROBLEMS = response(
    "problems",
    {
        "valid": False,
        "problems": [
            {
                "field": "archive",
                "member": "manifest.json",
                "message": "Invalid bundle: manifest.json: missing category 'mvtec/zipper' of suite 'mvtec'",
            },
            {
                "field": "archive",
                "member": "mvtec/bottle/ids.txt",
                "message": "Invalid bundle: mvtec/bottle/ids.txt: 1 unknown id(s), e.g. "
                "'/data/mvtec/bottle/test/good/000.png'; use the ids published for this category (one of them: "
                "'test/broken_large/003.png'); your ids look like published ids with the prefix "
                "'/data/mvtec/bottle/' in front: strip it",
            },
        ],
    },
    status=200,
)
