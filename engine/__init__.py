"""Shared utilities of the stage scripts: metrics, checkpoints, logging, runtime, distributed."""
