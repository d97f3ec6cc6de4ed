"""Errors of fusion.detect."""

from __future__ import annotations

from fusion.errors import FusionError


class DetectError(FusionError):
    """A detector cannot be built or run: an unknown name, a bad configuration, a malformed cloud."""
