"""Errors of the calib package."""

from __future__ import annotations

from fusion.errors import FusionError


class CalibrationError(FusionError):
    """Calibration is missing, malformed, or cannot answer a lookup."""
