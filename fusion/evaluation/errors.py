"""Errors of the evaluation package."""

from __future__ import annotations

from fusion.errors import FusionError


class EvaluationError(FusionError):
    """Labels cannot be evaluated or converted: a missing column, a bad value, an unreadable file."""
