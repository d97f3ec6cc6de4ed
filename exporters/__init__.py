"""The Parquet dataset of shared/CONTRACT.md (writer and reader) and other formats."""

from calib.transform import wrap_angle
from exporters.errors import ExportError
from exporters.labels import CameraBoxes, labels_table, read_labels, validate_labels, write_labels
from exporters.parquet_io import (
    AtomicParquetWriter,
    conform_table,
    read_table,
    sequence_id_of,
    write_table_atomic,
)
from exporters.schema import (
    CATEGORIES,
    FLAGS,
    FRAMES,
    IMAGES,
    LABELS,
    ORIGINS,
    POINTS,
    SCHEMA_VERSION,
    SEQUENCES,
    schema_with_metadata,
)

__all__ = [
    "CATEGORIES",
    "FLAGS",
    "FRAMES",
    "IMAGES",
    "LABELS",
    "ORIGINS",
    "POINTS",
    "SCHEMA_VERSION",
    "SEQUENCES",
    "AtomicParquetWriter",
    "CameraBoxes",
    "ExportError",
    "conform_table",
    "labels_table",
    "read_labels",
    "read_table",
    "schema_with_metadata",
    "sequence_id_of",
    "validate_labels",
    "wrap_angle",
    "write_labels",
    "write_table_atomic",
]
