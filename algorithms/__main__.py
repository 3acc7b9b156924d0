"""Command line: ``python -m algorithms list|check|run|bundle|submit``.

Examples
--------
``python -m algorithms list``
``python -m algorithms check --config algorithms/configs/synthetic_cpu.py`` (validate; print the runs)
``python -m algorithms run --config algorithms/configs/synthetic_cpu.py --device cpu --out var/runs/demo``
``python -m algorithms bundle ...`` (see ``algorithms/bundle.py``; ``bundle --check BUNDLE`` checks one)
``python -m algorithms submit bundle.zip --server URL`` (see ``algorithms/client.py``)
``python -m algorithms submit --anomalib mvtec/bottle=bottle.pt ... --method NAME --suite mvtec --server URL``
(anomalib's predictions; see ``algorithms/anomalib_bundle.py`` and ``docs/anomalib.md``)
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from collections.abc import Sequence
from pathlib import Path


def _cmd_list(args: argparse.Namespace) -> int:
    from .registry import get_algorithm_info, list_algorithms

    infos = [get_algorithm_info(name) for name in list_algorithms()]
    if args.json:
        print(json.dumps([info.to_json() for info in infos], indent=2))
        return 0
    width = max(len(info.key) for info in infos)
    for info in infos:
        families = info.family.display_name
        if info.secondary_family is not None:
            families += f" + {info.secondary_family.display_name}"
        print(f"{info.key:<{width}}  {info.display_name} [{families}]; {info.schedule.summary()}"
              f"{'  (baseline)' if info.is_baseline else ''}")  # fmt: skip
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    from .runspec import ConfigError, load_run_config

    try:
        loaded = load_run_config(args.config)
        specs = [spec.replace(device=args.device) if args.device else spec for spec in loaded.specs]
        loaded.check_params()
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps([spec.to_json() for spec in specs], indent=2))
        return 0
    for spec in specs:
        unit = spec.schedule_unit[:-1] if spec.schedule_length == 1 else spec.schedule_unit
        schedule = f"{spec.schedule_length} {unit}"
        print(f"{spec.name:<24} {spec.algorithm}: {schedule}, batch {spec.batch_size}, "
              f"cap {spec.train_time_limit_s:g} s, {len(spec.categories)} categories, seeds {list(spec.seeds)}, "
              f"device {spec.device}, params {dict(spec.params)}")  # fmt: skip
    print(f"{loaded.source}: {len(specs)} run(s), valid")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from .runner import ConfigError, run_config

    roots = dict(args.data_root) if args.data_root else None

    # On a terminal a progress bar (percentage of the config's work, elapsed and remaining time);
    # -v prints every message instead; quiet otherwise (logs, CI).
    bar = None
    if not args.verbose and sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(total=100, unit="%", file=sys.stderr, dynamic_ncols=True,
                   bar_format="{l_bar}{bar}| {n:.0f}% [{elapsed}<{remaining}] {postfix}")  # fmt: skip

    def progress(fraction: float, message: str) -> None:
        if args.verbose:
            print(f"{fraction:6.1%} {message}", file=sys.stderr, flush=True)
        elif bar is not None:
            bar.n = round(100 * min(max(fraction, 0.0), 1.0), 1)
            bar.set_postfix_str(message[:60], refresh=False)
            bar.refresh()

    try:
        results = run_config(args.config, device=args.device, out_dir=args.out, roots=roots, progress=progress)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        if bar is not None:
            bar.close()
    failed = [r for r in results if r["status"] != "ok"]
    for r in results:
        variant = r.get("primary_variant")
        metrics = r["metrics"].get(variant, {}) if variant else {}
        shown = "  ".join(f"{k}={v:.4f}" for k, v in metrics.items())
        status = "ok" if r["status"] == "ok" else f"FAILED: {r['error']}"
        print(f"{r['model_name']:<24} {r['category']:<28} seed {r['seed']}  {status}  {shown}")
    print(f"summary: {Path(args.out) / 'summary.json'}")
    return 1 if failed else 0


def _parse_root(text: str) -> tuple[str, str]:
    dataset, sep, path = text.partition("=")
    if not sep or not dataset or not path:
        raise argparse.ArgumentTypeError(f"expected DATASET=PATH (e.g. mvtec=/data/mvtec), got {text!r}")
    return dataset, path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m algorithms", description="VisionAD algorithm library")
    sub = parser.add_subparsers(dest="command", required=True)
    p_list = sub.add_parser("list", help="list the registered algorithms")
    p_list.add_argument("--json", action="store_true", help="print the metadata as JSON")
    p_list.set_defaults(func=_cmd_list)
    device_help = "override the config's device: auto, cpu, cuda or cuda:N (default: the config's, else auto)"
    p_check = sub.add_parser("check", help="validate a config (hyperparameters too) and print its runs")
    p_check.add_argument("--config", required=True, help="config .py file or module (algorithms/configs/*.py)")
    p_check.add_argument("--device", default=None, help=device_help)
    p_check.add_argument("--json", action="store_true", help="print the run specifications as JSON")
    p_check.set_defaults(func=_cmd_check)
    p_run = sub.add_parser("run", help="train and evaluate the runs of a config on their categories")
    p_run.add_argument("--config", required=True, help="config .py file or module (algorithms/configs/*.py)")
    p_run.add_argument("--device", default=None, help=device_help)
    p_run.add_argument("--out", default="var/runs", help="output directory (default var/runs)")
    p_run.add_argument(
        "--data-root",
        action="append",
        type=_parse_root,
        metavar="DATASET=PATH",
        help="dataset root override, repeatable (e.g. --data-root synthetic=var/data/synthetic)",
    )
    p_run.add_argument("-v", "--verbose", action="store_true", help="print progress messages")
    p_run.set_defaults(func=_cmd_run)
    # Listed here so that ``--help`` shows every subcommand; ``main`` hands its arguments to
    # ``algorithms.bundle`` (its own parser: ``python -m algorithms bundle --help``).
    sub.add_parser(
        "bundle", help="write (or check) a submission bundle from a run directory or anomalib's predictions",
        add_help=False,
    )  # fmt: skip
    sub.add_parser(
        "submit", add_help=False,
        help="upload a bundle (or build it from anomalib's predictions: --anomalib) to a leaderboard server, follow "
        "its scoring, print the results",
    )  # fmt: skip
    return parser


def _build_anomalib(*args, **kwargs):
    """``bundle --anomalib`` and ``submit --anomalib``: the writer, imported only when used."""
    from .anomalib_bundle import bundle_from_anomalib_files

    return bundle_from_anomalib_files(*args, **kwargs)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "bundle":
        if importlib.util.find_spec("algorithms.bundle") is None:
            print("error: the bundle command is not available (algorithms/bundle.py is missing)", file=sys.stderr)
            return 2
        from . import bundle

        return int(bundle.main(argv[1:], build_anomalib=_build_anomalib) or 0)
    if argv and argv[0] == "submit":
        from . import client

        return int(client.main(argv[1:], build_anomalib=_build_anomalib) or 0)
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
