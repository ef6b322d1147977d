"""Observability (SPEC O4): Prometheus metrics read from Keystile's own counters (:mod:`.metrics`), JSON logs
(:mod:`.logs`) and readiness (:mod:`.health`).

Nothing is re-exported here, so that importing the logging setup (``keystile serve``) does not import
prometheus-client: the metrics module is loaded by the first scrape.
"""
