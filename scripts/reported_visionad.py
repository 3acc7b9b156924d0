"""Extract the VisionAD paper's per-class tables (Appendix B, Tables 2-9) into reported figures.

    python scripts/reported_visionad.py PAPER.txt > leaderboard/data/reported_visionad.json

The paper's text (a plain-text rendering of the TMLR paper, ``visionad-paper.txt``) holds each
table as tab-separated blocks: a header of method names, one row per class and a ``mean`` row,
followed by its caption ``Table N: VisionAD results on the <dataset> dataset based on the
<metric> metric.``. Every number is kept as printed, including six values above 1 (CFlow and FastFlow+AltUB in
Tables 5-7), which are flagged; Table 5 spells CFlow "cfow". The output is what ``leaderboard.selectors.reported``
reads; nothing here is ever a leaderboard result.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

CAPTION = re.compile(r"^Table (\d+): VisionAD results on the (\w+) dataset based on the (.+?) metric\.")
METRICS = {"image-wise AUC": "image_auroc", "pixel-wise AUC": "pixel_auroc", "AUPRO": "aupro", "introduced PL": "pl"}
DATASETS = {"mvtec": "mvtec", "visa": "visa"}
METHOD_KEYS = {"efficientad": "efficient_ad", "cfow": "cflow"}  # "cfow": Table 5's spelling of CFlow


def method_key(name: str) -> str:
    name = name.strip().lower()
    return METHOD_KEYS.get(name, name.replace(" ", "_"))


def category_key(dataset: str, name: str) -> str | None:
    name = name.strip().lower()
    return None if name == "mean" else f"{dataset}/{name.replace(' ', '_')}"


def parse(text: str) -> list[dict]:
    figures: list[dict] = []
    blocks: list[list[list[str]]] = []
    current: list[list[str]] | None = None
    for line in text.splitlines():
        if line.startswith("\t"):  # a header row of method names opens a block
            current = [line.split("\t")]
            blocks.append(current)
            continue
        if current is not None and "\t" in line:
            current.append(line.split("\t"))
            continue
        current = None if line.strip() else current
        match = CAPTION.match(line.strip())
        if match:
            number, dataset, metric = match.groups()
            dataset, metric = DATASETS[dataset.lower()], METRICS[metric]
            for block in blocks:
                methods = [method_key(name) for name in block[0][1:]]
                for row in block[1:]:
                    category = category_key(dataset, row[0])
                    for method, cell in zip(methods, row[1:], strict=True):
                        value = float(cell)
                        figure = {"method": method, "dataset": dataset, "category": category, "metric": metric,
                                  "value": value, "source": "visionad", "table": f"Table {number}"}  # fmt: skip
                        if value > 1:
                            figure["note"] = "printed above 1, a value the metric cannot take: a misprint in the paper"
                        figures.append(figure)
            blocks = []
    return figures


def main() -> None:
    figures = parse(Path(sys.argv[1]).read_text())
    document = {
        "schema": "vadi-reported/1",
        "source": {
            "key": "visionad",
            "title": "VisionAD, a software package of performant anomaly detection algorithms, and Proportion "
            "Localised, an interpretable metric (Taylor and Morrison, TMLR 2024), Appendix B",
            "url": "https://openreview.net/forum?id=o5kYH7bNe3",
            "note": "Every algorithm trained for two hours per class with the publication's default parameters; "
            "values are fractions as printed (three decimals).",
        },
        "figures": figures,
    }
    head = json.dumps({k: v for k, v in document.items() if k != "figures"}, indent=1)[:-2]
    rows = ",\n".join(json.dumps(figure) for figure in figures)  # one figure a line: readable diffs
    sys.stdout.write(f'{head},\n "figures": [\n{rows}\n ]\n}}\n')


if __name__ == "__main__":
    main()
