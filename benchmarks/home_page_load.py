"""Load-test the home page: 30 methods x the 27 VADI categories x 4 metrics, cached vs uncached.

Builds a throw-away site (a fresh SQLite file by default; with ``--database-url`` a fresh
database created on that PostgreSQL server and dropped afterwards), fills it with fictitious
methods (``benchmarks/fake_results.py``: server-scored values of a fixture user, never
``reproduced``; it refuses production settings and any database holding real data), starts gunicorn on
loopback with production settings (``DJANGO_DEBUG=0``), and drives ``GET /`` with ``wrk`` for a
bounded time. It runs twice on the same data: with the page cache (local memory, as configured
by default) and with caching disabled (``CACHE_URL=dummycache://``), and prints both latency
distributions and their ratio. Before the timed runs it checks that the cached page reflects a
new result published after it was cached.

    .venv/bin/python benchmarks/home_page_load.py --duration 10 --connections 4 --workers 2

Needs ``wrk`` (``apt-get install -y wrk``); without it, a bounded single-connection Python
loop measures the same thing (``--driver python``).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable


def run(cmd: list[str], env: dict, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True, text=True, **kwargs)


def manage(env: dict, *args: str) -> str:
    return run([PY, "manage.py", *args], env).stdout.strip()


def fake_results(env: dict, *args: str) -> str:
    """Run the fictitious-results fixture against the throw-away database (with development settings)."""
    return run([PY, "benchmarks/fake_results.py", *args], {**env, "DJANGO_DEBUG": "1"}).stdout.strip()


def throwaway_postgres(server_url: str) -> tuple[str, Callable[[], None]]:
    """A new, empty database on the PostgreSQL server of ``server_url``; returns its URL and a dropper."""
    import psycopg

    parts = urllib.parse.urlsplit(server_url)
    name = f"vadi_bench_{uuid.uuid4().hex[:12]}"
    admin = urllib.parse.urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return urllib.parse.urlunsplit(parts._replace(path=f"/{name}")), drop


def wait_up(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"server at {url} did not come up in {timeout:.0f} s")


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=30) as r:
        return r.read().decode()


def drive_wrk(url: str, *, duration: int, connections: int) -> dict:
    out = subprocess.run(
        ["wrk", "-t", str(min(connections, 2)), "-c", str(connections), "-d", f"{duration}s", "--latency", url],
        capture_output=True,
        text=True,
        check=True,
        timeout=duration + 60,
    ).stdout

    def ms(text: str) -> float:
        value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()
        return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]

    lat = dict(re.findall(r"^\s*(50|75|90|99)%\s+([\d.]+(?:us|ms|s))\s*$", out, flags=re.M))
    if not {"50", "90", "99"} <= set(lat):
        raise RuntimeError(f"could not read wrk's latency distribution:\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return {
        "p50_ms": ms(lat["50"]),
        "p90_ms": ms(lat["90"]),
        "p99_ms": ms(lat["99"]),
        "rps": rps,
        "errors": int(non2xx.group(1)) if non2xx else 0,
        "raw": out,
    }


def drive_python(url: str, *, duration: int, connections: int) -> dict:
    times = []
    deadline = time.monotonic() + duration
    while time.monotonic() < deadline:
        t0 = time.perf_counter()
        fetch(url)
        times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    q = statistics.quantiles(times, n=100)
    return {"p50_ms": q[49], "p90_ms": q[89], "p99_ms": q[98], "rps": len(times) / duration, "errors": 0, "raw": ""}


def serve(env: dict, port: int, workers: int) -> subprocess.Popen:
    return subprocess.Popen(
        [
            PY,
            "-m",
            "gunicorn",
            "config.wsgi:application",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
            "--access-logfile",
            "-" if os.environ.get("BENCH_VERBOSE") else "/dev/null",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def stop(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", type=int, default=30)
    parser.add_argument("--duration", type=int, default=10, help="seconds per timed run (bounded)")
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument(
        "--database-url",
        default="",
        help="a PostgreSQL server (postgres://user@host:port/any): a fresh database is created there and dropped "
        "afterwards; default: a fresh SQLite file in a temp dir",
    )
    parser.add_argument("--driver", choices=("wrk", "python"), default="wrk" if shutil.which("wrk") else "python")
    args = parser.parse_args()
    if not 1 <= args.duration <= 120:
        parser.error("--duration must be between 1 and 120 seconds")

    tmp = Path(tempfile.mkdtemp(prefix="vadi-home-bench-"))
    drop_database = None
    database_url = f"sqlite:///{tmp / 'bench.sqlite3'}"
    if args.database_url:
        database_url, drop_database = throwaway_postgres(args.database_url)
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": "bench-" + "x" * 60,
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DJANGO_SECURE_SSL_REDIRECT": "0",
        "DJANGO_LOG_LEVEL": "WARNING",
        "VADI_VAR_DIR": str(tmp),
        "DATABASE_URL": database_url,
        "VADI_DATA_ROOT": str(tmp / "no-data"),
    }
    env.pop("CACHE_URL", None)
    try:
        measure(args, env)
    finally:
        if drop_database is not None:
            drop_database()
        shutil.rmtree(tmp, ignore_errors=True)


def measure(args, env: dict) -> None:
    t0 = time.perf_counter()
    manage(env, "migrate", "--noinput")
    manage(env, "collectstatic", "--noinput")
    manage(env, "sync_catalog")
    fake_results(env, "--methods", str(args.methods), "--suite", "vadi")
    print(f"setup: {time.perf_counter() - t0:.1f} s ({args.methods} methods x 27 categories x 4 metrics)")

    url = f"http://127.0.0.1:{args.port}/"
    drive = drive_wrk if args.driver == "wrk" else drive_python
    figures = {}
    for label, cache_url in (("cached (locmem)", ""), ("uncached (dummycache)", "dummycache://")):
        server_env = dict(env)
        if cache_url:
            server_env["CACHE_URL"] = cache_url
        proc = serve(server_env, args.port, args.workers)
        try:
            wait_up(url)
            page = fetch(url)
            rows = len(re.findall(r'<tr data-method="', page))
            if rows != args.methods:
                raise RuntimeError(f"expected {args.methods} ranked rows, the page has {rows}")
            if not cache_url:
                # The cached page must follow a write made by another process (here: a command).
                for _ in range(5):
                    fetch(url)
                before = fetch(url)
                fake_results(env, "--methods", "1", "--suite", "vadi", "--seed", str(time.time_ns() % 1000))
                after = [fetch(url) for _ in range(2 * args.workers)]
                if any(page == before for page in after):
                    raise RuntimeError("a worker served a stale cached page after a new result was published")
                print("cache check: every worker served the new result right after it was published")
            for _ in range(20):  # warm every worker
                fetch(url)
            result = drive(url, duration=args.duration, connections=args.connections)
        finally:
            stop(proc)
        figures[label] = result
        print(
            f"{label:24s} p50 {result['p50_ms']:7.2f} ms  p90 {result['p90_ms']:7.2f} ms  "
            f"p99 {result['p99_ms']:7.2f} ms  {result['rps']:8.1f} req/s  non-2xx {result['errors']}"
        )
    cached, uncached = figures["cached (locmem)"], figures["uncached (dummycache)"]
    print(
        f"ratio uncached/cached: p50 {uncached['p50_ms'] / cached['p50_ms']:.2f}x, "
        f"throughput cached/uncached {cached['rps'] / uncached['rps']:.2f}x"
    )
    print(f"driver: {args.driver}, {args.connections} connections, {args.duration} s per run, {args.workers} workers")


if __name__ == "__main__":
    main()
