"""Command line: ``python -m algorithms run|list|bundle``.

Examples
--------
``python -m algorithms list``
``python -m algorithms run --config algorithms/configs/synthetic_cpu.py --device cpu --out var/runs/demo``
``python -m algorithms bundle ...`` (see ``algorithms/bundle.py``)
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

    names = list_algorithms()
    if args.json:
        rows = []
        for name in names:
            info = get_algorithm_info(name)
            rows.append({k: getattr(info, k) for k in info.__dataclass_fields__})
        print(json.dumps(rows, indent=2))
        return 0
    width = max(len(n) for n in names)
    for name in names:
        info = get_algorithm_info(name)
        print(f"{name:<{width}}  {info.display_name} [{info.family}], {info.default_input_size}px"
              f"{'  (baseline)' if info.is_baseline else ''}")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from .runner import ConfigError, run_config

    roots = dict(args.data_root) if args.data_root else None

    def progress(fraction: float, message: str) -> None:
        if args.verbose:
            print(f"{fraction:6.1%} {message}", file=sys.stderr, flush=True)

    try:
        results = run_config(args.config, device=args.device, out_dir=args.out, roots=roots, progress=progress)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    failed = [r for r in results if r["status"] != "ok"]
    for r in results:
        variant = r.get("primary_variant")
        metrics = r["metrics"].get(variant, {}) if variant else {}
        shown = "  ".join(f"{k}={v:.4f}" for k, v in metrics.items())
        status = "ok" if r["status"] == "ok" else f"FAILED: {r['error']}"
        print(f"{r['model_name']:<24} {r['category']:<28} {status}  {shown}")
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
    p_run = sub.add_parser("run", help="train and evaluate the models of a config on its categories")
    p_run.add_argument("--config", required=True, help="config .py file or module (algorithms/configs/*.py)")
    p_run.add_argument("--device", default="cpu", help="torch device: cpu or cuda:0 (default cpu)")
    p_run.add_argument("--out", default="var/runs", help="output directory (default var/runs)")
    p_run.add_argument(
        "--data-root", action="append", type=_parse_root, metavar="DATASET=PATH",
        help="dataset root override, repeatable (e.g. --data-root synthetic=var/data/synthetic)",
    )
    p_run.add_argument("-v", "--verbose", action="store_true", help="print progress messages")
    p_run.set_defaults(func=_cmd_run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "bundle":
        if importlib.util.find_spec("algorithms.bundle") is None:
            print("error: the bundle command is not available (algorithms/bundle.py is missing)", file=sys.stderr)
            return 2
        from . import bundle

        return int(bundle.main(argv[1:]) or 0)
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
