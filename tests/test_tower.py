"""The tower warm-up on the tiny preset: only the tower moves, the heads learn, reruns skip, bad input fails."""

import json

import pytest
import torch
from PIL import Image

from qponder.data.records import Record, write_meta
from qponder.errors import QPonderError
from qponder.models import load
from qponder.models.build import init_model
from qponder.train.common import vision_modules
from qponder.train.tower import TowerRecipe, patch_summary, warm_up


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("tower")
    init_model("tiny", root / "tiny")
    (root / "images").mkdir()
    recs = []
    for i in range(24):
        # the family shows in the pixels: dark "brightness" images score low, bright references high
        fam, v = ("brightness", 20 + i) if i % 2 else ("none", 200 + i)
        Image.new("RGB", (64, 48), (v, v, v)).save(root / "images" / f"{i}.png")
        recs.append(Record(f"{i}.png", 1.5 if i % 2 else 4.5, family=fam))
    recs.append(Record("nolabel.png", 3.0))  # no family: its MOS still counts
    Image.new("RGB", (64, 48), (120, 120, 120)).save(root / "images" / "nolabel.png")
    write_meta(recs, root / "metas" / "train.json")
    return root


def test_patch_summary_drops_cls():
    h = torch.zeros(2, 5, 3)
    h[:, 0] = 100.0  # CLS: must not reach the summary
    h[:, 1:, 0] = torch.tensor([1.0, 2.0, 3.0, 4.0])
    s = patch_summary(h)
    assert s.shape == (2, 6)
    assert s[0, 0].item() == pytest.approx(2.5) and s[0, 3].item() == pytest.approx(1.2909944, rel=1e-5)
    assert s[:, 1:3].abs().max().item() == 0.0


def test_warm_up_trains_only_the_tower_and_learns(setup):
    out = setup / "warm"
    recipe = TowerRecipe(model=str(setup / "tiny"), data=str(setup / "metas" / "train.json"), out=str(out),
                         max_steps=30, batch_size=8, learning_rate=1e-3, head_learning_rate=1e-2, bf16=False,
                         logging_steps=5)
    warm_up(recipe, progress=False)
    card = json.loads((out / "tower.json").read_text())
    assert card["images"] == 25 and card["families"] == ["brightness", "none"]
    assert card["epochs"] == pytest.approx(30 * 8 / 25, abs=0.01)
    assert [r["step"] for r in card["log"]] == [5, 10, 15, 20, 25, 30]
    assert card["log"][-1]["mse"] < 0.5 * card["log"][0]["mse"]  # the two MOS groups are told apart
    assert card["log"][-1]["family_ce"] < 0.5 * card["log"][0]["family_ce"]
    before, after = load(str(setup / "tiny"))[0], load(str(out))[0]
    sb, sa = before.state_dict(), after.state_dict()
    tower = {"model.vision_tower." + k for k in vision_modules(before).state_dict()}
    moved = {k for k in sb if not torch.equal(sb[k], sa[k])}
    assert moved and moved <= tower  # the projector and the language model are untouched


def test_rerun_skips_and_seed_decides(setup):
    out = setup / "warm"
    stamp = (out / "tower.json").stat().st_mtime_ns
    warm_up(TowerRecipe(model=str(setup / "tiny"), data=str(setup / "metas" / "train.json"), out=str(out),
                        max_steps=30, batch_size=8, bf16=False), progress=False)
    assert (out / "tower.json").stat().st_mtime_ns == stamp
    kw = dict(model=str(setup / "tiny"), data=str(setup / "metas" / "train.json"), max_steps=3, batch_size=8,
              bf16=False)
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        warm_up(TowerRecipe(out=str(setup / name), seed=seed, **kw), progress=False)
    w = {n: load(str(setup / n))[0].model.vision_tower.state_dict() for n in "abc"}
    assert all(torch.equal(w["a"][k], w["b"][k]) for k in w["a"])
    assert not all(torch.equal(w["a"][k], w["c"][k]) for k in w["a"])


def test_bad_input_is_named(setup, tmp_path):
    with pytest.raises(QPonderError, match="max_steps and batch_size must be >= 1"):
        warm_up(TowerRecipe(model=str(setup / "tiny"), data=str(setup / "metas" / "train.json"),
                            out=str(tmp_path / "x"), max_steps=0), progress=False)
    bad = tmp_path / "metas" / "train.json"
    write_meta([Record("missing.png", 3.0)], bad)
    with pytest.raises(QPonderError, match="missing.png"):
        warm_up(TowerRecipe(model=str(setup / "tiny"), data=str(bad), out=str(tmp_path / "y")), progress=False)
    assert not (tmp_path / "y").exists()


def test_cli_warm_tower(setup, tmp_path):
    import subprocess
    import sys

    def qponder(*args):
        return subprocess.run([sys.executable, "-m", "qponder.cli", "model", "warm-tower", *map(str, args)],
                              capture_output=True, text=True, timeout=600)

    res = qponder("--model", setup / "tiny", "--data", setup / "metas" / "train.json", "--out", tmp_path / "w",
                  "--max-steps", 2, "--set", "batch_size=4", "--set", "bf16=false")
    assert res.returncode == 0, res.stderr
    card = json.loads((tmp_path / "w" / "tower.json").read_text())
    assert card["recipe"]["max_steps"] == 2 and card["recipe"]["batch_size"] == 4 and card["bf16"] is False
    res = qponder("--model", setup / "tiny", "--data", setup / "metas" / "train.json", "--out", tmp_path / "v",
                  "--set", "batch=4")
    assert res.returncode == 2 and "Traceback" not in res.stderr and "unknown key 'batch'" in res.stderr
