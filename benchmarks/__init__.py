"""Throughput benchmarks of the training, pretraining, loading and evaluation paths."""
