"""The deployment: two images (web without PyTorch, worker with it), the compose services, the GPU worker script.

Docker's daemon is not needed: the requirement files, the Dockerfile and the compose files are
read and checked as data; the compose files are also validated by ``docker compose config``
(or ``docker-compose config``) when a client is installed; the web process and a scoring worker
run here with PyTorch made unimportable (``tests.workers.torch_blocked_env``), as in the web image.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from algorithms.registry import list_algorithms
from tests.workers import TORCH_PACKAGES, torch_blocked_env

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
COMPOSE_GPU = ROOT / "docker-compose.gpu.yml"
SECRETS = ("DJANGO_SECRET_KEY", "POSTGRES_PASSWORD", "REDIS_PASSWORD")
GPU_SCRIPT = ROOT / "scripts" / "gpu_workers.py"


# Requirements ---------------------------------------------------------------------------------


def _pins(name: str, seen: tuple[str, ...] = ()) -> dict[str, str]:
    """``{normalised package name: line}`` of a requirements file, following ``-r`` includes."""
    assert name not in seen, f"requirements include cycle: {' -> '.join((*seen, name))}"
    pins: dict[str, str] = {}
    for raw in (ROOT / name).read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("-r "):
            included = _pins(line[3:].strip(), (*seen, name))
            assert not set(included) & set(pins), f"{name} pins {set(included) & set(pins)} twice"
            pins.update(included)
            continue
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)(\[[a-z,]+\])?==[0-9][0-9A-Za-z.+-]*", line)
        assert match, f"{name}: {line!r} is not an exact pin (package==version)"
        key = re.sub(r"[-_.]+", "-", match.group(1)).lower()
        assert key not in pins, f"{name} pins {key} twice"
        pins[key] = line
    return pins


def test_the_web_requirements_hold_no_torch_and_the_worker_adds_it():
    web, worker, everything = _pins("requirements-web.txt"), _pins("requirements-worker.txt"), _pins("requirements.txt")
    assert not set(web) & set(TORCH_PACKAGES), f"the web image must not install {set(web) & set(TORCH_PACKAGES)}"
    assert set(TORCH_PACKAGES) <= set(worker)
    assert web.items() <= worker.items()
    assert everything == worker  # `make demo` / `make test` install everything, once each
    for package in ("django", "celery", "numpy", "opencv-python-headless"):  # web process and scoring
        assert package in web


def test_the_dockerfile_builds_the_web_image_from_the_web_requirements_only():
    text = (ROOT / "Dockerfile").read_text()
    stages: dict[str, str] = {}
    for block in re.split(r"^(?=FROM )", text, flags=re.MULTILINE):
        match = re.match(r"FROM (\S+) AS (\S+)", block)
        if match:
            stages[match.group(2)] = block
    parents = {name: re.match(r"FROM (\S+)", block).group(1) for name, block in stages.items()}

    def lineage(stage: str) -> list[str]:
        chain = [stage]
        while parents.get(chain[-1]) in stages:
            chain.append(parents[chain[-1]])
        return chain

    def installs(stage: str) -> set[str]:
        return {f for s in lineage(stage) for f in re.findall(r"pip install -r (\S+)", stages[s])}

    assert installs("web") == {"requirements-web.txt"}
    assert installs("worker") == {"requirements-web.txt", "requirements-worker.txt"}
    assert "find_spec" in stages["web-deps"]  # the build itself fails if torch slipped into the web image


# Compose -----------------------------------------------------------------------------------


def _services(path: Path) -> dict:
    return yaml.safe_load(path.read_text())["services"]


def _target(service: dict) -> str:
    return service["build"]["target"]


def _command(service: dict) -> str:
    command = service["command"]
    return command if isinstance(command, str) else " ".join(command)


def test_compose_runs_web_scoring_gpu_beat_postgres_and_redis_on_the_right_images():
    services = _services(COMPOSE)
    assert {"web", "scoring-worker", "gpu-worker", "beat", "db", "redis", "migrate"} <= set(services)
    for name in ("web", "scoring-worker", "beat", "migrate"):
        assert _target(services[name]) == "web", name  # no PyTorch
    for name in ("gpu-worker", "cpu-benchmark-worker"):
        assert _target(services[name]) == "worker", name
    scoring = _command(services["scoring-worker"])
    assert "-Q ${VADI_QUEUE_SCORING:-scoring},${VADI_QUEUE_HOUSEKEEPING:-housekeeping}" in scoring
    assert "benchmarks" not in scoring
    assert _command(services["gpu-worker"]) == "python scripts/gpu_workers.py"
    (device,) = services["gpu-worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert device == {"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}
    assert _command(services["beat"]).startswith("celery -A config beat")
    assert services["db"]["image"].startswith("postgres:") and services["redis"]["image"].startswith("redis:")
    assert services["web"]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}


def test_compose_files_hold_no_secret_and_refuse_to_start_without_one():
    for path in (COMPOSE, COMPOSE_GPU):
        text = path.read_text()
        for secret in SECRETS:
            for use in re.findall(rf"\$\{{{secret}(:?[-?][^}}]*)?\}}", text):
                assert not use.startswith((":-", "-")), f"{path.name} gives {secret} a default"
        assert not re.search(r"change-me|insecure|password123", text, flags=re.IGNORECASE)
    env = _services(COMPOSE)["web"]["environment"]
    assert env["DJANGO_SECRET_KEY"].startswith("${DJANGO_SECRET_KEY:?")
    assert "${POSTGRES_PASSWORD:?" in env["DATABASE_URL"] and "${REDIS_PASSWORD:?" in env["CELERY_BROKER_URL"]


def test_a_gpu_machine_needs_only_the_broker_database_cache_data_and_models():
    (name,) = _services(COMPOSE_GPU)
    service = _services(COMPOSE_GPU)[name]
    assert _target(service) == "worker" and _command(service) == "python scripts/gpu_workers.py"
    required = set(re.findall(r"\$\{(\w+):\?", COMPOSE_GPU.read_text()))
    assert required == {"DJANGO_SECRET_KEY", "DATABASE_URL", "CELERY_BROKER_URL", "CACHE_URL",
                        "VADI_DATASETS_DIR", "VADI_MODELS_DIR"}  # fmt: skip


def _compose_client() -> list[str] | None:
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


def test_docker_compose_config_accepts_the_files_and_names_a_missing_secret():
    client = _compose_client()
    if client is None:
        pytest.skip("no docker compose client installed (the files are checked as data above)")
    clean = {k: v for k, v in os.environ.items() if k not in SECRETS}
    missing = subprocess.run([*client, "-f", str(COMPOSE), "config", "-q"], cwd=ROOT, env=clean,
                             capture_output=True, text=True, timeout=60)  # fmt: skip
    assert missing.returncode != 0 and "set DJANGO_SECRET_KEY" in missing.stderr, missing.stderr
    env = {**clean, **dict.fromkeys(SECRETS, "test-only-value")}
    proc = subprocess.run([*client, "-f", str(COMPOSE), "config", "--services"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert {"web", "scoring-worker", "gpu-worker", "beat", "db", "redis"} <= set(proc.stdout.split())
    gpu_env = {**env, "CELERY_BROKER_URL": "redis://:x@main:6379/0", "CACHE_URL": "redis://:x@main:6379/1",
               "DATABASE_URL": "postgres://vadi:x@main:5432/vadi", "VADI_DATASETS_DIR": "/srv/data",
               "VADI_MODELS_DIR": "/srv/models"}  # fmt: skip
    proc = subprocess.run([*client, "-f", str(COMPOSE_GPU), "config", "-q"], cwd=ROOT, env=gpu_env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 0, proc.stderr


# The web image's processes run without torch ----------------------------------------------------


def _without_torch(code: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if k not in ("DJANGO_SETTINGS_MODULE", "DATABASE_URL",
                                                             "CELERY_BROKER_URL", "CACHE_URL")}  # fmt: skip
    full.update(torch_blocked_env(tmp_path / "no-torch"), VADI_VAR_DIR=str(tmp_path / "var"), **env)
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=full, capture_output=True, text=True,
                          timeout=300)  # fmt: skip


def test_the_blocker_really_hides_torch(tmp_path):
    proc = _without_torch("import torch", tmp_path)
    assert proc.returncode != 0 and "No module named 'torch' (not installed in the web image)" in proc.stderr


def test_the_web_process_migrates_serves_and_takes_a_rebenchmark_request_without_torch(tmp_path):
    """What the web image runs: migrate (catalog and registered methods), pages, APIs, an admin's re-benchmark.

    With a broker configured (an in-memory one: nothing runs in this process), the request
    creates the runs and dispatches the first jobs (``VADI_BENCHMARK_DISPATCH_AHEAD``); the rest
    wait in the database for the GPU workers.
    """
    code = (
        "import os, sys, json, django\n"
        "os.environ['DJANGO_SETTINGS_MODULE'] = 'config.settings'\n"
        "django.setup()\n"
        "from django.core.management import call_command\n"
        "call_command('migrate', verbosity=1, interactive=False)\n"
        "from django.test import Client\n"
        "c = Client()\n"
        "for url in ('/', '/methods/', '/api/v1/health/', '/api/v1/suites/', '/api/v1/methods/',\n"
        "            '/api/v1/leaderboard/vadi/', '/api/v1/benchmark-runs/', '/api/v1/schema/'):\n"
        "    r = c.get(url)\n"
        "    assert r.status_code == 200, (url, r.status_code)\n"
        "from django.contrib.auth import get_user_model\n"
        "c.force_login(get_user_model().objects.create_user('admin', password='pw-123456', is_staff=True))\n"
        "r = c.post('/api/v1/staff/benchmark-runs/', {'methods': ['patchcore', 'fastflow'], 'suites': ['vadi'],\n"
        "           'config': 'paper'}, content_type='application/json')\n"
        "assert r.status_code == 201, r.content\n"
        "from leaderboard.models import BenchmarkJob\n"
        "import evaluation.tasks  # what a scoring worker imports at start-up\n"
        "print(json.dumps({'jobs': BenchmarkJob.objects.count(),\n"
        "                  'dispatched': BenchmarkJob.objects.exclude(dispatched_at=None).count(),\n"
        "                  'torch': 'torch' in sys.modules}))\n"
    )
    proc = _without_torch(code, tmp_path, CELERY_BROKER_URL="memory://", CELERY_RESULT_BACKEND="cache+memory://")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # Every registered algorithm (the registry's metadata is torch-free: read here the same way).
    assert f"methods: {', '.join(sorted(list_algorithms()))}" in proc.stdout
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {"jobs": 2 * 27, "dispatched": 2, "torch": False}


# scripts/gpu_workers.py ---------------------------------------------------------------------


def _gpu_script(*args: str, **env: str) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if k not in ("VADI_GPUS", "CUDA_VISIBLE_DEVICES")}
    full.update(env)
    return subprocess.run([sys.executable, str(GPU_SCRIPT), *args], cwd=ROOT, env=full, capture_output=True,
                          text=True, timeout=60)  # fmt: skip


def test_one_worker_per_gpu_each_seeing_only_its_gpu_as_cuda_0():
    proc = _gpu_script("--dry-run", "--", "--without-gossip", VADI_GPUS="0,3", VADI_QUEUE_BENCHMARKS="gpu-h200")
    assert proc.returncode == 0, proc.stderr
    plans = json.loads(proc.stdout)
    assert [p["env"] for p in plans] == [
        {"CUDA_VISIBLE_DEVICES": "0", "VADI_DEVICE": "cuda:0"},
        {"CUDA_VISIBLE_DEVICES": "3", "VADI_DEVICE": "cuda:0"},
    ]
    for i, plan in enumerate(plans):
        argv = plan["argv"]
        assert argv[argv.index("-Q") + 1] == "gpu-h200"
        one_job_at_a_time = {"--concurrency=1", "--prefetch-multiplier=1", "--max-tasks-per-child=1"}
        assert one_job_at_a_time | {"--without-gossip"} <= set(argv)
        assert argv[argv.index("-n") + 1].startswith(f"gpu{i}@")
    from_cuda = json.loads(_gpu_script("--dry-run", CUDA_VISIBLE_DEVICES="GPU-5f1c,GPU-77ab").stdout)
    assert [p["env"]["CUDA_VISIBLE_DEVICES"] for p in from_cuda] == ["GPU-5f1c", "GPU-77ab"]
    cpu = json.loads(_gpu_script("--dry-run", "--cpu-workers", "2").stdout)
    assert [p["env"] for p in cpu] == [{"VADI_DEVICE": "cpu"}] * 2


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        ((), {"PATH": "/nonexistent"}, "no GPU found: nvidia-smi is not installed"),
        ((), {"CUDA_VISIBLE_DEVICES": ""}, "CUDA_VISIBLE_DEVICES='' names no GPU"),
        (("--gpus", "0,0"), {}, "GPU list '0,0' names a GPU twice"),
        (("--gpus", "0,,1"), {}, "GPU list '0,,1' has an empty entry"),
        (("--cpu-workers", "0"), {}, "--cpu-workers must be at least 1, got 0"),
    ],
)
def test_no_gpu_or_a_bad_gpu_list_is_refused_with_the_reason(args, env, message):
    proc = _gpu_script(*args, **env)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr


@pytest.mark.worker
def test_the_script_starts_its_workers_and_stops_them_all_on_sigterm(tmp_path):
    from config.celery import app
    from tests.workers import require_broker

    broker = require_broker()
    queue = f"vadi-gpu-script-{os.getpid()}-{time.monotonic_ns()}"
    log = open(tmp_path / "script.log", "w")  # noqa: SIM115  (closed below)
    env = {**os.environ, "VADI_QUEUE_BENCHMARKS": queue, "CELERY_BROKER_URL": broker,
           "DJANGO_SETTINGS_MODULE": "config.settings"}  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, str(GPU_SCRIPT), "--cpu-workers", "2", "--", "--without-gossip", "--without-mingle"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        names: set[str] = set()
        while len(names) < 2:
            assert proc.poll() is None, (tmp_path / "script.log").read_text()
            assert time.monotonic() < deadline, (tmp_path / "script.log").read_text()
            replies = app.control.ping(timeout=1.0) or []
            names = {n for reply in replies for n in reply if n.startswith(("cpu0@", "cpu1@"))}
        active = app.control.inspect(destination=sorted(names), timeout=2.0).active_queues() or {}
        assert {q["name"] for queues in active.values() for q in queues} == {queue}
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, (tmp_path / "script.log").read_text()
        assert not [n for reply in app.control.ping(timeout=1.0) or [] for n in reply if n in names]
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
