"""Run configs: plain Python files that define ``models`` (run entries) and shared run keys.

``python -m algorithms check --config algorithms/configs/synthetic_cpu.py`` validates one and
prints its runs; ``python -m algorithms run --config ...`` runs it; the leaderboard's
re-benchmarks (admin, staff API, ``manage.py rebenchmark``) use the files of this folder by name.
The keys and their defaults are those of ``algorithms.runspec.RunSpec``: an entry that gives only
``{"algorithm": "fastflow"}`` runs FastFlow's publication schedule (``AlgorithmInfo.schedule``).

Configs describe runs; they never build models, so they must not import torch (the web process
loads them). Name helpers ``_like_this`` or in CAPITALS: other lower-case names are refused as
likely typos of a run key.
"""
