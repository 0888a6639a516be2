"""The command line as a user meets it: real subprocesses, exit codes, one-line errors."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures" / "datasets"


def qponder(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "qponder.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=600)


def assert_one_line_error(res, *needles):
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr
    lines = [ln for ln in res.stderr.strip().splitlines() if ln.strip()]
    joined = " ".join(ln.strip() for ln in lines)  # rich may wrap a long line at the terminal width
    assert joined.startswith("error:")
    for n in needles:
        assert n in joined, joined


@pytest.mark.timeout(600)
def test_build_then_eval_brisque(tmp_path):
    res = qponder("data", "build", "--out", tmp_path / "synth", "--n-refs", 12, "--per-ref", 2, "--workers", 1)
    assert res.returncode == 0, res.stderr
    assert "test_compound" in res.stdout
    res = qponder("eval", "--model", "brisque", "--data", tmp_path / "synth" / "metas" / "test.json",
                  "--out", tmp_path / "ev")
    assert res.returncode == 0, res.stderr
    s = json.loads((tmp_path / "ev" / "summary.json").read_text())
    for k in ("n", "srcc", "plcc", "plcc_logistic", "krcc", "rmse", "parse_fail_rate", "images_per_second",
              "per_family"):
        assert k in s
    assert s["n"] == len((tmp_path / "ev" / "predictions.jsonl").read_text().splitlines()) > 0
    assert s["parse_fail_rate"] == 0 and s["rmse"] is None  # BRISQUE has its own scale
    # a rerun finds every image scored and scores nothing again
    res = qponder("eval", "--model", "brisque", "--data", tmp_path / "synth" / "metas" / "test.json",
                  "--out", tmp_path / "ev")
    again = json.loads((tmp_path / "ev" / "summary.json").read_text())
    assert res.returncode == 0 and again["srcc"] == s["srcc"]
    assert again["images_per_second"] == s["images_per_second"]


def test_convert_native_tid2013(tmp_path):
    labels = FIXTURES / "tid2013" / "mos_with_names.txt"
    res = qponder("data", "convert", "--dataset", "TID2013", "--labels", labels, "--out", tmp_path / "m.json")
    assert res.returncode == 0, res.stderr
    meta = json.loads((tmp_path / "m.json").read_text())
    first = labels.read_text().split()[0]
    assert meta[0]["gt_score"] == pytest.approx(1 + 4 * float(first) / 9, abs=1e-4)


def test_convert_with_image_root_reports_missing(tmp_path):
    res = qponder("data", "convert", "--dataset", "tid2013", "--labels", FIXTURES / "tid2013" / "mos_with_names.txt",
                  "--images", tmp_path, "--out", tmp_path / "m.json")
    assert_one_line_error(res, "missing", "--skip-missing")


def test_bad_inputs_are_one_line_errors(tmp_path):
    assert_one_line_error(qponder("data", "convert", "--dataset", "imagenet", "--labels", "x", "--out", tmp_path / "m"),
                          "imagenet")
    assert_one_line_error(qponder("eval", "--model", "nope", "--data", tmp_path / "x.csv", "--out", tmp_path / "o"),
                          "unknown model 'nope'")
    bad = tmp_path / "bad.csv"
    bad.write_text("image,mos\na.png,3\nb.png,abc\n")
    assert_one_line_error(qponder("eval", "--model", "brisque", "--data", bad, "--out", tmp_path / "o"),
                          str(bad), "line 3", "'abc' is not a number")
    empty = tmp_path / "empty.csv"
    empty.write_text("image,mos\n")
    assert_one_line_error(qponder("eval", "--model", "brisque", "--data", empty, "--out", tmp_path / "o"),
                          "contains no records")
    junk = tmp_path / "j"
    junk.mkdir()
    (junk / "a.png").write_text("not a png")
    (junk / "l.csv").write_text("image,mos\na.png,3\n")
    assert_one_line_error(qponder("eval", "--model", "brisque", "--data", junk / "l.csv", "--out", tmp_path / "o2"),
                          "a.png: not a readable image")


def test_judge_fit_reads_evidence_and_rejects_unknown_reads(tmp_path):
    from tests.test_judge import corpus

    texts, scores = corpus()
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps({"text": f"<think>{t}</think><answer>{s:.2f}</answer>"}) + "\n"
                            for t, s in zip(texts, scores)))
    res = qponder("judge", "fit", "--data", data, "--out", tmp_path / "ev.json", "--reads", "evidence")
    assert res.returncode == 0, res.stderr
    saved = json.loads((tmp_path / "ev.json").read_text())
    assert saved["reads"] == "evidence" and saved["meta"]["n"] == 180
    assert_one_line_error(qponder("judge", "fit", "--data", data, "--out", tmp_path / "x.json", "--reads", "verdict"),
                          "reads must be one of all, evidence", "'verdict'")
