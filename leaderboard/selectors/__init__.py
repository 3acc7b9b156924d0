"""Reads: every query that a page, an API or a command needs lives in a function of this package.

Modules: ``leaderboard`` (the suite aggregation and the per-category tables), ``catalog``
(datasets, categories, suites, methods), ``results`` (result lists with filters and the per-page
result tables), ``jobs`` (submissions and benchmark runs, with visibility rules), ``metrics``
(the metric registry), ``accounts`` (API tokens). Selectors never import services: reads do not
depend on writes (an import-linter contract).
"""
