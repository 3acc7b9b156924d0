"""Datasets: placeholder until the datasets issue lands."""
