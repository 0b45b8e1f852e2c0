"""Metrics: per-worker stats in shared memory, the Prometheus endpoint, StatsD."""
