"""Errors of the trackers package."""

from __future__ import annotations

from fusion.errors import FusionError


class TrackingError(FusionError):
    """The tracker was given input it cannot track (bad config, wrong shapes, time going backwards)."""
