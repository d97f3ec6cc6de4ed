"""The Parquet dataset of shared/CONTRACT.md (writer and reader) and other formats."""

from calib.transform import wrap_angle
from exporters.dataset import (
    DatasetWriter,
    FrameCamera,
    FrameRow,
    ImagesWriter,
    PipelineInfo,
    PointsWriter,
    SequenceCamera,
    SequenceInfo,
    SequenceWriter,
    frames_table,
    points_table,
    sequences_table,
)
from exporters.errors import ExportError
from exporters.labels import CameraBoxes, labels_table, read_labels, validate_labels, write_labels
from exporters.parquet_io import (
    AtomicParquetWriter,
    conform_table,
    read_table,
    sequence_id_of,
    write_table_atomic,
)
from exporters.reader import Dataset, Sequence, open_dataset
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
from exporters.validate import validate_dataset

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
    "Dataset",
    "DatasetWriter",
    "ExportError",
    "FrameCamera",
    "FrameRow",
    "ImagesWriter",
    "PipelineInfo",
    "PointsWriter",
    "Sequence",
    "SequenceCamera",
    "SequenceInfo",
    "SequenceWriter",
    "conform_table",
    "frames_table",
    "labels_table",
    "open_dataset",
    "points_table",
    "read_labels",
    "read_table",
    "schema_with_metadata",
    "sequence_id_of",
    "sequences_table",
    "validate_dataset",
    "validate_labels",
    "wrap_angle",
    "write_labels",
    "write_table_atomic",
]
