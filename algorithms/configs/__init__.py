"""Run configs (Python modules, as in the paper): ``models``, ``categories``, ``seed``.

``python -m algorithms run --config algorithms/configs/synthetic_cpu.py`` runs one. Start your
own from the defaults, e.g. ``dict(PATCHCORE, params={"coreset_ratio": 0.01})`` (see
``defaults.py``).
"""
