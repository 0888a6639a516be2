"""What does the consistency judge read: the reasoning's observations, or only its verdict word?

The teacher ends every trace with a verdict sentence ("Overall the quality is fair."), and its five quality words
are bands of the score (``qponder.teachers.attribute.quality_word``). A judge fitted on the whole trace can lean
on that one word; then "the reasoning supports the answer" means little more than "the answer lies in the band of
the word written just before it". This reads each model's greedy eval completions of a demo run with two judges,
the run's own (whole reasoning) and one that reads the evidence only (``reads="evidence"``: the reasoning without
its final sentence; fitted here on the run's traces when the file is missing), and reports per split:

- the consistency rate (|implied - answer| < 0.5, the evaluator's rule) under each judge;
- how often the verdict's quality word is the answer's band (``verdict_band_match``), and the whole-text judge's
  rate where it is and where it is not: if the rate follows the word, the judge is reading the word;
- the implied scores' SRCC and mean |implied - MOS| against the answer's own: does the reasoning carry the MOS as
  well as the answer does?

With ``--pair WITH,WITHOUT`` (two ``grpo_arms.py`` arm names) it also pairs the runs ``WITH_sN`` and
``WITHOUT_sN`` of every seed evaluated for both, and tests the differences as ``consistency_effect.py`` does: each
judge's rate (mean of the splits), and per split the SRCC and the family accuracy of the eval summaries.

Reads only the run's files (no model is run), in seconds.

    python benchmarks/judge_reading.py --run runs/demo27 --models teacher,ci,qponder
    python benchmarks/judge_reading.py --run runs/demo27 --models ci --pair gdpo_ev1,gdpo_none
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr


def main() -> None:
    from qponder.judge import TextJudge, evidence, fit_from_distilled
    from qponder.lexicon import QUALITY_WORDS
    from qponder.models.answer import parse
    from qponder.teachers.attribute import quality_word

    ap = argparse.ArgumentParser()
    ap.add_argument("--run", type=Path, default=Path("runs/demo"))
    ap.add_argument("--models", default="teacher,ci,qponder", help="comma-separated folders under RUN/eval")
    ap.add_argument("--splits", default="test,test_xtype,test_compound")
    ap.add_argument("--evidence-judge", type=Path, help="default: RUN/judge/evidence.json, fitted there if missing")
    ap.add_argument("--pair", help="WITH,WITHOUT: arm names whose seed runs are paired and tested")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/judge_reading.json"))
    a = ap.parse_args()
    models = a.models.split(",")
    if a.pair:
        arm_with, arm_without = a.pair.split(",")
        seeds = sorted(int(d.name.rsplit("_s", 1)[1]) for d in (a.run / "eval").glob(f"{arm_with}_s*")
                       if (a.run / "eval" / f"{arm_without}_s{d.name.rsplit('_s', 1)[1]}").is_dir())
        if not seeds:
            raise SystemExit(f"--pair {a.pair}: no seed evaluated for both arms under {a.run / 'eval'}")
        models += [f"{arm}_s{seed}" for seed in seeds for arm in (arm_with, arm_without)]

    whole = TextJudge.load(a.run / "judge" / "judge.json")
    ev_path = a.evidence_judge or a.run / "judge" / "evidence.json"
    if not ev_path.exists():
        fit_from_distilled(a.run / "distill" / "train.jsonl", reads="evidence").save(ev_path)
    ev = TextJudge.load(ev_path)
    word = re.compile(r"\b(" + "|".join(QUALITY_WORDS) + r")\b")

    res = {"run": str(a.run), "judges": {"whole": whole.meta, "evidence": {**ev.meta, "path": str(ev_path)}},
           "models": {}}
    for model in models:
        res["models"][model] = {}
        for split in a.splits.split(","):
            path = a.run / "eval" / model / split / "predictions.jsonl"
            if not path.exists():
                raise SystemExit(f"{path}: no eval predictions (run the demo's eval stage for {model!r})")
            rows = [json.loads(line) for line in path.read_text().splitlines()]
            parsed = [parse(r.get("text")) for r in rows]
            keep = [(r, p) for r, p in zip(rows, parsed) if p.ok and p.reasoning and p.score is not None]
            if len(keep) < 3:
                raise SystemExit(f"{path}: fewer than 3 parseable completions with reasoning")
            s = np.array([p.score for _, p in keep])
            m = np.array([float(r["mos"]) for r, _ in keep])
            reasoning = [p.reasoning for _, p in keep]
            out = {"n": len(keep), "answer_srcc": _r(spearmanr(s, m).statistic), "answer_mae": _r(np.abs(s - m).mean())}
            implied = {}
            for name, judge in (("whole", whole), ("evidence", ev)):
                imp = implied[name] = judge.implied(reasoning)
                have = [i for i, x in enumerate(imp) if x is not None]
                x, ss, mm = np.array([imp[i] for i in have]), s[have], m[have]
                out[name] = {"judged": len(have), "consistency_rate": _r(np.mean(np.abs(x - ss) < 0.5)),
                             "implied_srcc": _r(spearmanr(x, mm).statistic), "implied_mae": _r(np.abs(x - mm).mean()),
                             "implied_answer_gap": _r(np.abs(x - ss).mean())}
            # the verdict: the quality word of the final sentence, where the judge of the whole text finds it
            verdicts = [word.findall(t.strip()[len(evidence(t)):].lower()) for t in reasoning]
            match = np.array([bool(v) and v[-1] == quality_word(x) for v, x in zip(verdicts, s)])
            agree = np.abs(np.array([np.nan if x is None else x for x in implied["whole"]]) - s) < 0.5
            out["verdict_word_found"] = _r(np.mean([bool(v) for v in verdicts]))
            out["verdict_band_match"] = _r(match.mean())
            out["whole_rate_where_band_matches"] = _r(agree[match].mean()) if match.any() else None
            out["whole_rate_where_band_differs"] = _r(agree[~match].mean()) if (~match).any() else None
            res["models"][model][split] = out
            print(model, split, json.dumps(out), flush=True)
    if a.pair:
        res["pair"] = paired(res["models"], a.run, arm_with, arm_without, seeds, a.splits.split(","))
        print(json.dumps(res["pair"]["tests"]), flush=True)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=1))
    print(f"wrote {a.out}")


def paired(models: dict, run: Path, arm_with: str, arm_without: str, seeds: list[int], splits: list[str]) -> dict:
    import statistics
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from consistency_effect import test

    def summary(model: str, split: str) -> dict:
        return json.loads((run / "eval" / model / split / "summary.json").read_text())

    rows = []
    for seed in seeds:
        w, wo = f"{arm_with}_s{seed}", f"{arm_without}_s{seed}"
        row = {"seed": seed}
        for judge in ("evidence", "whole"):
            row[f"{judge}_rates"] = [round(statistics.fmean(models[m][s][judge]["consistency_rate"] for s in splits), 4)
                                     for m in (w, wo)]
            row[f"{judge}_rate"] = round(row[f"{judge}_rates"][0] - row[f"{judge}_rates"][1], 4)
        for s in splits:
            row[f"srcc_{s}"] = round(summary(w, s)["srcc"] - summary(wo, s)["srcc"], 4)
        row["family_acc_test"] = round(summary(w, "test")["family_acc"] - summary(wo, "test")["family_acc"], 4)
        rows.append(row)
    keys = ["evidence_rate", "whole_rate"] + [f"srcc_{s}" for s in splits] + ["family_acc_test"]
    tests = {k: test([r[k] for r in rows]) for k in keys} if len(rows) > 1 else {}
    return {"with": arm_with, "without": arm_without, "seeds": seeds, "rows": rows, "tests": tests}


def _r(x) -> float:
    return round(float(x), 4)


if __name__ == "__main__":
    main()
