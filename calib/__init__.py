"""Geometry and time of sensors: cameras, transforms, TF buffer, projection, deskew.

Knows nothing of bags, Dask or Parquet: takes arrays and dataclasses.
"""
