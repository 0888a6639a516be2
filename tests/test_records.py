import json

import pytest

from qponder.data.records import Record, check_images, load_records, read_csv, read_meta, write_csv, write_meta
from qponder.errors import QPonderError


def test_meta_roundtrip(tmp_path):
    recs = [Record("a.png", 3.25, std=0.4, dataset="x", split="test", dis_type="jpeg", family="compression",
                   level=2, ref="r.png", extra={"note": "hi"}),
            Record("b.png", 1.0)]
    p = write_meta(recs, tmp_path / "m.json")
    raw = json.loads(p.read_text())
    assert raw[0]["gt_score"] == 3.25 and "mos" not in raw[0]  # DeQA-Score's field name
    back = read_meta(p)
    assert back == recs


def test_read_deqa_meta_with_conversations(tmp_path):
    p = tmp_path / "m.json"
    p.write_text(json.dumps([{"image": "1.jpg", "gt_score": 2.5, "std": 0.3,
                              "conversations": [{"from": "human", "value": "<image>"}]}]))
    (r,) = read_meta(p)
    assert (r.image, r.mos, r.std) == ("1.jpg", 2.5, 0.3)


def test_csv_roundtrip(tmp_path):
    recs = [Record("a.png", 4.5, std=0.1, level=3, family="blur"), Record("b.png", 2.0)]
    p = write_csv(recs, tmp_path / "l.csv")
    assert read_csv(p) == recs


@pytest.mark.parametrize("row,needle", [
    ("a.png,", "line 3: missing field 'mos'"),
    ("a.png,good", "line 3: mos 'good' is not a number"),
    ("a.png,nan", "line 3: mos is 'nan'"),
    ("a.png,7.5", "line 3: mos 7.5 is outside [1, 5]"),
    (",3.0", "line 3: missing field 'image'"),
])
def test_bad_csv_rows_name_file_and_line(tmp_path, row, needle):
    p = tmp_path / "bad.csv"
    p.write_text(f"image,mos\nok.png,3.0\n{row}\n")
    with pytest.raises(QPonderError) as e:
        read_csv(p)
    assert str(p) in str(e.value) and needle in str(e.value)


def test_bad_files(tmp_path):
    (tmp_path / "empty.csv").write_text("image,mos\n")
    (tmp_path / "nohdr.csv").write_text("x,y\n1,2\n")
    (tmp_path / "broken.json").write_text("[{")
    (tmp_path / "obj.json").write_text("{}")
    (tmp_path / "x.parquet").write_text("")
    for name, needle in [("empty.csv", "contains no records"), ("nohdr.csv", "must contain 'image' and 'mos'"),
                         ("broken.json", "not valid JSON"), ("obj.json", "expected a JSON list"),
                         ("x.parquet", "unknown label format"), ("missing.csv", "file not found")]:
        with pytest.raises(QPonderError, match=needle):
            load_records(tmp_path / name)


def test_check_images_counts_and_skips(tmp_path):
    (tmp_path / "a.png").write_bytes(b"x")
    recs = [Record("a.png", 3.0), Record("b.png", 3.0), Record("c.png", 3.0)]
    with pytest.raises(QPonderError) as e:
        check_images(recs, tmp_path, source="meta.json")
    assert "2 of 3 images are missing" in str(e.value) and "b.png, c.png" in str(e.value)
    assert [r.image for r in check_images(recs, tmp_path, skip_missing=True)] == ["a.png"]
