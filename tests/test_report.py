"""The run report on a small fake run folder: tables, summary.json, quality bars, plots, examples, CLI."""

import json
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from qponder.cli import app
from qponder.errors import QPonderError
from qponder.report import compare_runs, compute_bars, pick_examples, write_report

FAMILIES = ["blur", "noise", "color", "compression", "none", "spatial"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# model -> split -> headline numbers; qponder's test SRCC passes its bar, its family accuracy misses it,
# and teacher has no test_xtype so the test_xtype qponder-vs-ci bar cannot be measured without ci there.
SUMMARIES = {
    "brisque": {"test": dict(srcc=0.41234, plcc=0.45, krcc=0.30, mean_tokens=None),
                "test_xtype": dict(srcc=0.35, plcc=0.36, krcc=0.25)},
    "teacher": {"test": dict(srcc=0.7, plcc=0.71, krcc=0.52, family_acc=0.8, severity_acc=0.4, clean_rate=0.5,
                             mean_tokens=90.0)},
    "ci": {"test": dict(srcc=0.85, plcc=0.86, krcc=0.66, family_acc=0.7, srcc_expected=0.875, plcc_expected=0.88,
                        krcc_expected=0.7)},
    "qponder": {"test": dict(srcc=0.91234, plcc=0.9, krcc=0.75, family_acc=0.85, severity_acc=0.6,
                             consistency_rate=0.95, mean_tokens=101.5, parse_fail_rate=0.05),
                "test_xtype": dict(srcc=0.8, plcc=0.79, krcc=0.6)},
}


def _text(model, fam, score):
    return f"<think>{model} sees {fam} here.</think><answer>{score:.2f}</answer>"


def make_run(root: Path, grpo: bool = True, seconds: float = 60.0, student: bool = True) -> Path:
    run = root
    imgs = run / "synth" / "images"
    imgs.mkdir(parents=True)
    rows = []
    for i in range(12):
        fam = FAMILIES[i % len(FAMILIES)]
        name = f"img{i:02d}__{fam}.png"
        Image.new("RGB", (64, 48), (20 * i, 100, 200 - 10 * i)).save(imgs / name)
        rows.append({"image": name, "mos": 1 + i / 3, "family": fam, "level": i % 5, "dis_type": fam})
    (run / "synth" / "metas").mkdir()
    (run / "synth" / "metas" / "test.json").write_text(json.dumps([{"image": r["image"], "gt_score": r["mos"]}
                                                                   for r in rows]))
    for model, splits in SUMMARIES.items():
        for split, vals in splits.items():
            d = run / "eval" / model / split
            d.mkdir(parents=True)
            summary = {"n": len(rows), "parse_fail_rate": 0.0, "rmse": 0.5, **vals,
                       "per_family": {f: {"n": 2, "srcc": None if f == "none" else 0.1 * k, "plcc": 0.2}
                                      for k, f in enumerate(FAMILIES)}}
            (d / "summary.json").write_text(json.dumps(summary))
            reasons = model in ("teacher", "ci", "qponder")
            with open(d / "predictions.jsonl", "w") as f:
                for j, r in enumerate(rows):
                    score = r["mos"] + (0.1 if model == "qponder" else -0.3)
                    f.write(json.dumps({**r, "score": score, "ok": True, "reason": None, "raw": None,
                                        "text": _text(model, r["family"], score) if reasons else None,
                                        "tokens": 20 if reasons else None, "latency": 0.1}) + "\n")
    (run / "stages.json").write_text(json.dumps({"synth": {"seconds": seconds}, "ci": {"seconds": 120.0},
                                                 "eval": {"seconds": 30.0}}))
    for m in ("ci", "qponder"):
        (run / m).mkdir()
    if student:  # the card `qponder model init` writes
        (run / "student").mkdir()
        spec = {"lm": "random", "lm_layers": 4, "lm_hidden": 384, "lm_intermediate": 1536, "lm_heads": 6}
        (run / "student" / "qponder_student.json").write_text(json.dumps(
            {"preset": "default", "spec": spec, "parameters": 18561024, "image_tokens": 64}))
    if grpo:
        log = [{"step": s, "reward": 0.5 + 0.1 * s, "reward_std": 0.1, "kl": 0.01 * s, "loss": 0.0,
                "rewards/score/mean": 0.3 + 0.05 * s, "rewards/format/mean": 0.2 + 0.05 * s,
                "completions/mean_length": 50} for s in range(1, 6)]
        (run / "qponder" / "trainer_state.json").write_text(json.dumps(log + [{"train_runtime": 12.0, "step": 5}]))
    return run


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    run = make_run(tmp_path_factory.mktemp("r") / "runA")
    return run, write_report(run)


def test_report_tables(report):
    run, _ = report
    md = (run / "report.md").read_text()
    assert str(run) in md
    assert ("Student: preset `default`: random Llama 4 layers x 384 wide, 6 heads, MLP 1536; 64 image tokens; "
            "18.6 M parameters") in md
    assert "| Q-Ponder | 0.912 | 0.900 | 0.750 | 0.800 | 0.790 | 0.600 |" in md
    assert "| BRISQUE | 0.412 | 0.450 | 0.300 | 0.350 | 0.360 | 0.250 |" in md
    assert "| teacher (attribute) | 0.700 | 0.710 | 0.520 | – | – | – |" in md
    # fixed model order, whatever the folder order
    assert md.index("| BRISQUE |") < md.index("| teacher (attribute) |") < md.index("| Q-Ponder-CI |") \
        < md.index("| Q-Ponder |")
    # reasoning table only for models with reasoning metrics; parse failures; time per stage
    assert "| Q-Ponder | test | 0.850 | 0.600 | 0.950 | – | 101.5 |" in md
    assert "| BRISQUE | test |" not in md
    assert "| Q-Ponder | 0.050 | 0.000 |" in md
    assert "| ci | 120.0 | 2.0 |" in md and "| **total** | 210.0 | 3.5 |" in md
    # which families the reasoning names, read from the predictions: "spatial" is no lexicon word, so the fake
    # texts never name it; references ("none") and models without reasoning are not in the table
    naming = md[md.index("## Which distortion families"):md.index("## Parse failures")]
    assert "| model | blur (2) | color (2) | compression (2) | noise (2) | spatial (2) |" in naming
    assert "| Q-Ponder | 1.000 | 1.000 | 1.000 | 1.000 | 0.000 |" in naming and "BRISQUE" not in naming
    # the expected-score table lists only the models that have one
    exp = md[md.index("## Agreement with MOS, expected score"):md.index("## Reasoning")]
    assert "| Q-Ponder-CI | 0.875 | 0.880 | 0.700 |" in exp and "| Q-Ponder |" not in exp


def test_summary_json(report):
    run, ret = report
    s = json.loads((run / "summary.json").read_text())
    assert s == json.loads(json.dumps(ret))
    assert list(s["models"]) == ["brisque", "teacher", "ci", "qponder"]
    assert list(s["models"]["qponder"]) == ["test", "test_xtype"]
    q = s["models"]["qponder"]["test"]
    for k in ("srcc", "plcc", "krcc", "parse_fail_rate", "family_acc", "severity_acc", "consistency_rate",
              "mean_tokens", "n"):
        assert k in q
    assert q["srcc"] == 0.91234 and q["n"] == 12 and s["models"]["ci"]["test"]["consistency_rate"] is None
    assert list(s["stages"]) == ["synth", "ci", "eval"] and s["stages"]["ci"] == {"seconds": 120.0}
    assert s["model_dirs"] == {"ci": str(run / "ci"), "qponder": str(run / "qponder")}
    assert s["grpo"]["steps"] == 5 and s["grpo"]["reward_last"] == pytest.approx(1.0)


MINUTES = "demo minutes, every stage (the bar is for the 2-core CPU)"


def test_bars(report):
    run, s = report
    bars = {b["name"]: b for b in s["bars"]}
    assert all(set(b) >= {"name", "value", "target", "passed"} for b in s["bars"])
    b = bars["Q-Ponder test SRCC"]
    assert b["passed"] is True and b["gap"] == pytest.approx(0.01234)
    b = bars["Q-Ponder test SRCC minus best of BRISQUE/NIQE"]
    assert b["value"] == pytest.approx(0.5) and b["passed"] is True
    b = bars["Q-Ponder minus Q-Ponder-CI SRCC on test"]
    assert b["value"] == pytest.approx(0.06234) and b["passed"] is True
    assert bars["Q-Ponder minus Q-Ponder-CI SRCC on test_xtype"]["passed"] is None  # no ci on test_xtype
    assert bars["no-CoT SFT test SRCC below Q-Ponder-CI's"]["passed"] is None  # no sft_no_reasoning
    b = bars["Q-Ponder test family accuracy"]
    assert b["passed"] is False and b["gap"] == pytest.approx(-0.05)
    assert bars["Q-Ponder test family accuracy above the teacher's"]["passed"] is True
    assert bars[MINUTES]["passed"] is None  # the fake run timed three stages, not all eight
    md = (run / "report.md").read_text().split("## Quality bars")[1]
    assert "| Q-Ponder test SRCC | 0.912 | >= 0.900 | 0.012 | PASS |" in md
    assert "| Q-Ponder test family accuracy | 0.850 | >= 0.900 | -0.050 | MISSED |" in md
    assert md.count("not measured") == 4
    # a missed bar brings the diagnostics: answer spread per model on the MOS scale, GRPO group signal
    d = s["diagnostics"]
    assert set(d["answers"]) == {"qponder"}  # the others' fake scores (MOS - 0.3) leave [1, 5], like a baseline's
    assert d["answers"]["qponder"]["distinct"] == 12 and d["grpo"]["reward_std_mean"] == pytest.approx(0.1)
    assert "## Diagnostics" in md and "| Q-Ponder | " in md.split("## Diagnostics")[1]


def test_the_wall_time_bar_sums_every_stage():
    from qponder.demo import STAGES

    timed = {s: {"seconds": 150.0} for s in STAGES if s != "report"}  # 8 stages x 2.5 min
    got = {b["name"]: b for b in compute_bars({}, timed)}[MINUTES]
    assert got["value"] == 20.0 and got["passed"] is True and got["gap"] == 0.0
    timed["grpo"] = {"seconds": 678.0}  # stop 22's fp32 GRPO on the Intel machine
    got = {b["name"]: b for b in compute_bars({}, timed)}[MINUTES]
    assert got["value"] == pytest.approx(28.8) and got["passed"] is False


def test_bar_edge_cases():
    m = lambda **kw: {k: {"test": {"srcc": v}} for k, v in kw.items()}  # noqa: E731
    bars = {b["name"]: b for b in compute_bars(m(sft_no_reasoning=0.5, ci=0.5, qponder=0.9))}
    assert bars["no-CoT SFT test SRCC below Q-Ponder-CI's"]["passed"] is False  # strictly below
    assert bars["Q-Ponder test SRCC"]["passed"] is True  # exactly on the bar passes
    assert bars["Q-Ponder test SRCC minus best of BRISQUE/NIQE"]["passed"] is None
    assert all(b["passed"] is None for b in compute_bars({}))


def test_plots_are_pngs(report):
    run, s = report
    assert s["plots"] == ["plots/scatter.png", "plots/family_srcc.png", "plots/grpo_curves.png"]
    md = (run / "report.md").read_text()
    for p in s["plots"]:
        assert (run / p).read_bytes()[:8] == PNG_MAGIC
        assert f"]({p})" in md
        with Image.open(run / p) as im:
            assert im.size[0] > 100


def test_examples(report):
    run, _ = report
    md = (run / "report.md").read_text().split("## Examples")[1].split("## Quality bars")[0]
    thumbs = sorted((run / "examples").iterdir())
    assert len(thumbs) == 5 and all(t.read_bytes()[:8] == PNG_MAGIC for t in thumbs)
    for t in thumbs:
        assert f"](examples/{t.name})" in md
        with Image.open(t) as im:
            assert max(im.size) <= 192
    assert md.count("| Q-Ponder |") == 5 and md.count("| teacher (attribute) |") == 5
    assert "qponder sees" in md and "teacher sees" in md and "<think>" not in md
    assert "MOS **" in md


def test_pick_examples_varied_and_deterministic():
    rows = [{"image": f"{f}{i}.png", "family": f, "text": "t"} for f in ("blur", "noise", "color") for i in range(4)]
    rows.append({"image": "x.png", "family": "blur", "text": None})  # no reasoning: never an example
    a, b = pick_examples(rows), pick_examples(list(reversed(rows)))
    assert a == b and len(a) == 5 and len({r["image"] for r in a}) == 5
    assert {r["family"] for r in a[:3]} == {"blur", "noise", "color"}


def test_no_grpo_log_skips_curves(tmp_path):
    s = write_report(make_run(tmp_path / "r", grpo=False), out=tmp_path / "out")
    assert "plots/grpo_curves.png" not in s["plots"] and s["grpo"] is None
    assert (tmp_path / "out" / "report.md").is_file() and not (tmp_path / "r" / "report.md").exists()


def test_compare_runs(report, tmp_path):
    run_a, _ = report
    run_b = make_run(tmp_path / "runB", grpo=False, seconds=600.0, student=False)  # no summary.json yet: built now
    path = compare_runs([run_a, run_b], tmp_path / "cmp")
    md = path.read_text()
    assert path == tmp_path / "cmp" / "compare.md" and (run_b / "summary.json").is_file()
    assert "runA test" in md and "runB test_xtype" in md
    assert "384 wide" in md.split("\n- `runB`")[0] and "student:" not in md.split("\n- `runB`")[1].split("\n")[0]
    assert "| Q-Ponder | 0.912 | 0.800 | – | 0.912 | 0.800 | – |" in md
    assert "| Q-Ponder-CI, expected score | 0.875 | – | – | 0.875 | – | – |" in md
    assert "| Q-Ponder, expected score |" not in md  # only models that have one
    assert "| **total time (min)** | 3.5 |  |  | 12.5 |  |  |" in md
    assert "| **bars passed** | 4/9 |" in md


def test_errors(tmp_path):
    with pytest.raises(QPonderError, match="does not exist"):
        write_report(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(QPonderError, match="no eval/"):
        write_report(tmp_path / "empty")
    run = make_run(tmp_path / "bad", grpo=False)
    (run / "summary.json").write_text("{not json")
    with pytest.raises(QPonderError, match=str(run / "summary.json")):
        compare_runs([run, run], tmp_path / "cmp")
    (run / "eval" / "ci" / "test" / "summary.json").write_text("[1,")
    with pytest.raises(QPonderError, match="ci/test/summary.json"):
        write_report(run)


def test_cli(tmp_path, report):
    runner = CliRunner()
    run = make_run(tmp_path / "one", grpo=False)
    res = runner.invoke(app, ["report", str(run)])
    assert res.exit_code == 0, res.output
    assert res.stdout.strip() == str(run / "report.md") and (run / "summary.json").is_file()
    res = runner.invoke(app, ["report", str(run), str(report[0]), "--out", str(tmp_path / "cmp")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "cmp" / "compare.md").is_file()
    missing = tmp_path / "missing_run"
    res = runner.invoke(app, ["report", str(missing)])
    assert res.exit_code == 2
    err = " ".join(res.stderr.split())
    assert err.startswith("error:") and str(missing) in err and "Traceback" not in res.output


def test_the_wall_time_bar_is_the_demos_budget_only(tmp_path):
    from qponder.config import dump
    from qponder.demo import FULL, STAGES, DemoRecipe, check
    from qponder.report import demo_budget

    run = tmp_path / "run"
    run.mkdir()
    assert demo_budget(run) is None  # a run that says nothing of its recipe keeps the bar
    dump(DemoRecipe(out=str(run)), run / "demo.yaml")
    assert demo_budget(run) is None
    full = DemoRecipe(**{**FULL, "out": str(run)})
    check(full)  # as `qponder demo --full` stores it
    dump(full, run / "demo.yaml")
    why = demo_budget(run)
    assert "sft.max_steps 900 (the demo: 600)" in why and "grpo.max_steps 200 (the demo: 60)" in why
    timed = {s: {"seconds": 430.0} for s in STAGES if s != "report"}  # 57 minutes, as --full took at stop 28
    got = {b["name"]: b for b in compute_bars({}, timed, why)}[MINUTES]
    assert got["value"] == pytest.approx(57.3) and got["passed"] is None and got["not_applicable"] == why
    (run / "demo.yaml").write_text("- a list\n")
    with pytest.raises(QPonderError, match="demo.yaml is not a mapping"):
        demo_budget(run)
