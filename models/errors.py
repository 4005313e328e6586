"""Errors raised by the models package when weights cannot be had or do not fit."""

from __future__ import annotations


class WeightsUnavailableError(RuntimeError):
    """Requested pretrained weights are neither cached, downloadable nor readable from a file."""


class EncoderMismatchError(RuntimeError):
    """A checkpoint or weight file does not fit the encoder it is loaded into."""
