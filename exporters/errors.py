"""Errors of the exporters package."""

from __future__ import annotations

from fusion.errors import FusionError


class ExportError(FusionError):
    """A dataset cannot be written or read (unwritable path, wrong schema version)."""
