"""The one record schema for a labelled image, and the two file formats we read and write.

Formats:
- DeQA-Score meta JSON: a list of objects ``{"image": ..., "gt_score": mos_1_5, "std": ..., ...}``.
  DeQA's own metas also carry ``gt_score_norm``/``conversations``; we read ``gt_score`` (falling back to
  ``gt_score_norm``) and write ``gt_score`` plus our extra fields, which DeQA's loaders ignore.
- Plain CSV: header with at least ``image,mos`` (optional ``std`` and any record field, e.g. the
  ``labels.csv`` of qponder-synth).

MOS is always on [1, 5], higher is better. Loaders of native label files convert to it
(see ``qponder.data.datasets.SCALES``).
"""

from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Iterable

from qponder.errors import QPonderError

MOS_MIN, MOS_MAX = 1.0, 5.0


@dataclass
class Record:
    """One labelled image. ``image`` is relative to an image root unless absolute."""

    image: str
    mos: float
    std: float | None = None
    dataset: str = ""
    split: str = ""
    dis_type: str | None = None  # distortion type name, e.g. "gaussian_blur" or "gaussian_blur+jpeg"
    family: str | None = None  # distortion family, e.g. "blur", "noise"; "none" for a pristine reference
    level: int | None = None  # 1..5 (KADID levels); 0 for a reference
    ref: str | None = None  # reference image name
    mos_cell: float | None = None  # label of the (type, level) cell when the MOS is refined per image
    extra: dict = field(default_factory=dict)

    def path(self, root: str | os.PathLike | None) -> Path:
        p = Path(self.image)
        return p if p.is_absolute() or root is None else Path(root) / p

    def to_dict(self) -> dict:
        d = asdict(self)
        extra = d.pop("extra")
        d = {k: v for k, v in d.items() if v is not None and v != ""}
        d.update(extra)
        return d


_FIELDS = {f.name for f in fields(Record)} - {"extra"}
_FLOAT = {"mos", "std", "mos_cell"}
_INT = {"level"}


def _check_mos(value, where: str, field_name: str = "mos") -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise QPonderError(f"{where}: {field_name} {value!r} is not a number") from None
    if math.isnan(x) or math.isinf(x):
        raise QPonderError(f"{where}: {field_name} is {value!r}")
    if not (MOS_MIN - 1e-6 <= x <= MOS_MAX + 1e-6):
        raise QPonderError(
            f"{where}: {field_name} {x} is outside [1, 5]; convert native scales with "
            "`qponder data convert --dataset NAME` (see the scale table in the README)"
        )
    return min(max(x, MOS_MIN), MOS_MAX)


def record_from_dict(d: dict, where: str) -> Record:
    """Build a record from a JSON/CSV row, validating as we go. ``where`` names the file and row."""
    if not isinstance(d, dict):
        raise QPonderError(f"{where}: expected an object, got {type(d).__name__}")
    image = d.get("image", d.get("img_path"))
    if image is None or str(image).strip() == "":
        raise QPonderError(f"{where}: missing field 'image'")
    mos_key = next((k for k in ("mos", "gt_score", "gt_score_norm") if d.get(k) not in (None, "")), None)
    if mos_key is None:
        raise QPonderError(f"{where}: missing field 'mos' (or DeQA 'gt_score')")
    kw: dict = {"image": str(image).strip(), "mos": _check_mos(d[mos_key], where, mos_key)}
    extra = {}
    for k, v in d.items():
        if k in ("image", "img_path", "mos", "gt_score", "gt_score_norm", "conversations"):
            continue
        if k in _FIELDS:
            if v is None or v == "":
                continue
            try:
                if k in _FLOAT:
                    v = float(v)
                    if math.isnan(v):
                        raise ValueError
                elif k in _INT:
                    v = int(float(v))
                else:
                    v = str(v)
            except ValueError:
                raise QPonderError(f"{where}: field {k!r} has bad value {v!r}") from None
            kw[k] = v
        else:
            extra[k] = v
    return Record(**kw, extra=extra)


def read_meta(path: str | os.PathLike) -> list[Record]:
    """Read a DeQA-Score style meta JSON (a list of objects)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise QPonderError(f"{path}: file not found") from None
    except json.JSONDecodeError as e:
        raise QPonderError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(data, list):
        raise QPonderError(f"{path}: expected a JSON list of records, got {type(data).__name__}")
    return [record_from_dict(d, f"{path}: item {i}") for i, d in enumerate(data)]


def write_meta(records: Iterable[Record], path: str | os.PathLike) -> Path:
    """Write a DeQA-Score style meta JSON (``gt_score`` is our MOS on [1, 5])."""
    out = []
    for r in records:
        d = r.to_dict()
        d["gt_score"] = round(d.pop("mos"), 4)
        out.append(d)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(out, indent=1))
    tmp.replace(path)
    return path


def read_csv(path: str | os.PathLike) -> list[Record]:
    """Read a plain CSV with header ``image,mos[,std,...]``."""
    path = Path(path)
    try:
        fh = path.open(newline="")
    except FileNotFoundError:
        raise QPonderError(f"{path}: file not found") from None
    with fh:
        reader = csv.DictReader(fh)
        cols = reader.fieldnames or []
        if "image" not in cols or "mos" not in cols:
            raise QPonderError(f"{path}: CSV header must contain 'image' and 'mos' (found: {', '.join(cols) or 'nothing'})")
        # row numbers count the header as line 1, as a spreadsheet shows them
        return [record_from_dict(row, f"{path}: line {i}") for i, row in enumerate(reader, start=2)]


CSV_COLUMNS = ["image", "mos", "std", "dis_type", "level", "family", "ref", "split", "dataset", "mos_cell"]


def write_csv(records: Iterable[Record], path: str | os.PathLike, columns: list[str] | None = None) -> Path:
    records = list(records)
    columns = columns or CSV_COLUMNS
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        for r in records:
            d = r.to_dict()
            if "mos" in d:
                d["mos"] = round(d["mos"], 4)
            w.writerow(d)
    tmp.replace(path)
    return path


def load_records(path: str | os.PathLike) -> list[Record]:
    """Load a META.json or a CSV, by extension. Empty files are an error, not an empty dataset."""
    path = Path(path)
    if path.is_dir():
        raise QPonderError(f"{path}: is a folder; pass a meta JSON or a CSV file")
    suffix = path.suffix.lower()
    if suffix == ".json":
        recs = read_meta(path)
    elif suffix in (".csv", ".txt"):
        recs = read_csv(path)
    else:
        raise QPonderError(f"{path}: unknown label format {suffix!r}; expected .json (DeQA meta) or .csv")
    if not recs:
        raise QPonderError(f"{path}: contains no records")
    return recs


def check_images(records: list[Record], root: str | os.PathLike | None, skip_missing: bool = False,
                 source: str = "") -> list[Record]:
    """Check that every record's image exists under ``root``.

    Missing files are an error that counts them and names the first few, unless ``skip_missing``,
    in which case they are dropped (the caller reports the count via the returned list's length).
    """
    missing = [r for r in records if not r.path(root).is_file()]
    if not missing:
        return records
    if not skip_missing:
        names = ", ".join(r.image for r in missing[:5])
        where = f"{source}: " if source else ""
        raise QPonderError(
            f"{where}{len(missing)} of {len(records)} images are missing under {root or '.'} "
            f"(first: {names}); pass --skip-missing to drop them"
        )
    keep = [r for r in records if r.path(root).is_file()]
    if not keep:
        raise QPonderError(f"{source}: all {len(records)} images are missing under {root}")
    return keep
