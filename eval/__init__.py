"""Evaluation: metrics, baselines, benchmarks. Import as `from eval import metrics`."""
