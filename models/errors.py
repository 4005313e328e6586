"""Errors raised by the models package when weights cannot be had or do not fit."""

from __future__ import annotations

from common.errors import UserError


class WeightsUnavailableError(UserError, RuntimeError):
    """Requested pretrained weights are neither cached, downloadable nor readable from a file."""


class EncoderMismatchError(UserError, RuntimeError):
    """A checkpoint or weight file does not fit the encoder it is loaded into."""
