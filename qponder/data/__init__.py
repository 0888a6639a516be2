"""Data layer: one record schema, dataset loaders, the qponder-synth benchmark."""

from qponder.data.records import Record, load_records, read_csv, read_meta, write_csv, write_meta

__all__ = ["Record", "load_records", "read_csv", "read_meta", "write_csv", "write_meta"]
