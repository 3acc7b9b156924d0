"""Reads: every query that a page or an API needs lives in a function of this package.

Modules: ``leaderboard`` (the suite aggregation and the per-category tables), ``catalog``
(datasets, categories, suites, methods), ``results`` (result lists with filters), ``jobs``
(submissions and benchmark runs, with visibility rules), ``metrics`` (the metric registry).
"""
