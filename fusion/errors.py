"""Errors of the fusion package, all under one base a caller can catch: `FusionError`.

Each message names the file (or topic) at fault and what the user can do about it; the
CLI prints it as one line and exits with code 2.
"""

from __future__ import annotations


class FusionError(Exception):
    """Base of every error fusion raises on purpose."""


class BagError(FusionError):
    """A bag cannot be opened or read: missing, not a bag, unknown format, corrupt."""


class DecodeError(FusionError):
    """A message cannot be turned into typed data (bad field layout, unknown encoding)."""


class SyncError(FusionError):
    """Sensors cannot be put on one timeline (no overlap, no images within tolerance)."""


class ViewError(FusionError):
    """A dataset cannot be shown or drawn (no such sequence or frame, output exists)."""
