"""benchmarks/family_paired.py: per-image family hits and the paired comparison it reports."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

_spec = importlib.util.spec_from_file_location(
    "family_paired", Path(__file__).parents[1] / "benchmarks" / "family_paired.py")
fp = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fp)


def _row(image, family, reasoning):
    return {"image": image, "family": family, "text": f"<think>{reasoning}</think><answer>3.0</answer>"}


def test_hits_scores_distorted_images_as_the_evaluator(tmp_path):
    f = tmp_path / "predictions.jsonl"
    rows = [_row("a", "blur", "The image is blurry and soft, details are lost."),
            _row("b", "blur", "Strong random grain and noise everywhere."),
            _row("c", "noise+jpeg", "Strong random grain and noise everywhere."),
            _row("d", "none", "Clean."),  # a pristine reference has no family to name: skipped
            {"image": "e", "family": "blur", "text": None}]  # no reasoning: skipped, as reasoning_metrics does
    f.write_text("\n".join(json.dumps(r) for r in rows))
    assert fp.hits(f) == {"a": 1, "b": 0, "c": 1}


def test_hits_names_the_bad_file_and_line(tmp_path):
    f = tmp_path / "predictions.jsonl"
    f.write_text('{"image": "a"}\nnot json\n')
    with pytest.raises(SystemExit, match="predictions.jsonl:2"):
        fp.hits(f)
    with pytest.raises(SystemExit, match="no predictions"):
        fp.hits(tmp_path / "missing.jsonl")


def test_paired_counts_discordant_images_only():
    ci = {"a": 1, "b": 1, "c": 0, "d": 0, "x": 1}
    model = {"a": 1, "b": 0, "c": 1, "d": 1}  # "x" is not in both: left out
    r = fp.paired(ci, model)
    assert (r["n"], r["lost"], r["gained"]) == (4, 1, 2)
    assert r["delta"] == pytest.approx(0.25)
    assert 0 < r["mcnemar_p"] <= 1


def test_group_interval_covers_the_mean_change_and_shrinks_with_agreement():
    rng = np.random.default_rng(0)
    ci = {str(i): i % 2 for i in range(400)}
    worse = {k: 0 for k in ci}  # loses every image the CI got right
    g = fp.group_interval(ci, [worse, worse], 2000, rng)
    assert g["delta"] == pytest.approx(-0.5)
    assert g["ci95"][0] < -0.5 < g["ci95"][1] < 0
    same = fp.group_interval(ci, [dict(ci)], 2000, rng)
    assert same["delta"] == 0 and same["ci95"] == [0.0, 0.0]
