"""Benchmarks of the model registry: `python -m bench` (or `make bench`)."""
