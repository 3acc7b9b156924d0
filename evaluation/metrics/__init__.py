"""Metrics engine (pure numpy): placeholder until the metrics issue lands."""

EVALUATOR_VERSION = "0"
