"""Does choosing a GRPO checkpoint on the validation split help on the test splits?

GRPO at the demo's budget scatters around the CI from seed to seed (docs/results.md, stop 8). If part of that
scatter is *along* a run (some checkpoints better than others), a held-out split can pick the better one. The
synth ``val`` split has its own reference photos, disjoint from ``test``'s, so choosing on it is model
selection, not peeking. For every GRPO run given, each kept checkpoint (``checkpoints/checkpoint-N``) and the
final model are evaluated on ``val`` and on the demo's test splits with the demo's evaluator; the checkpoint
with the best validation SRCC is "selected". Reports the SRCC change over the CI of the final model and of the
selected one, per run and on average, and how well the validation change predicts the test change
(``benchmarks/results/grpo_select.json``, merged with earlier runs of the script).

    python benchmarks/grpo_select.py --run runs/demo --models qponder,ablation/qponder_s1,ablation/qponder_s2
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

KEYS = ("srcc", "srcc_expected", "family_acc", "consistency_rate")


def candidates(model: Path) -> dict[str, Path]:
    """Step -> folder: the kept checkpoints before the last step, and the final model under its last step."""
    last = max(int(h["step"]) for h in json.loads((model / "trainer_state.json").read_text()) if "step" in h)
    out = {}
    for c in sorted((model / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1])):
        step = int(c.name.split("-")[1])
        if step < last and (c / "model.safetensors").exists():
            out[str(step)] = c
    out[str(last)] = model
    return out


def main() -> None:
    from scipy.stats import spearmanr

    from qponder.config import build
    from qponder.data.records import load_records
    from qponder.demo import DemoRecipe
    from qponder.eval.evaluate import default_image_root, evaluate, make_predictor
    from qponder.judge import TextJudge

    ap = argparse.ArgumentParser()
    ap.add_argument("--run", type=Path, default=Path("runs/demo"))
    ap.add_argument("--models", required=True, help="comma-separated GRPO output folders, relative to the run")
    ap.add_argument("--val-stride", type=int, default=1, help="every Nth validation image (399 in the demo)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/grpo_select.json"))
    a = ap.parse_args()
    demo = build(DemoRecipe, a.run / "demo.yaml")
    meta = a.run / "synth" / "metas"
    judge = TextJudge.load(a.run / "judge" / "judge.json")
    splits = {s: load_records(meta / f"{s}.json")[:: demo.test_stride if s == "test" else 1] for s in demo.splits}
    splits["val"] = load_records(meta / "val.json")[:: a.val_stride]

    def scored(name: str, folder: Path) -> dict:
        """SPLIT -> KEYS for one model, evaluated into RUN/eval/NAME/SPLIT (reused when already there)."""
        predictor, res = None, {}
        for split, records in splits.items():
            out = a.run / "eval" / name / split
            done = out / "summary.json"
            if not (done.exists() and json.loads(done.read_text()).get("n") == len(records)):
                predictor = predictor or make_predictor(str(folder), batch_size=demo.batch_size,
                                                        max_new_tokens=demo.max_new_tokens)
                print(f"eval {name} on {split} ({len(records)} images)", flush=True)
                evaluate(predictor, meta / f"{split}.json", out, records=records, batch_size=demo.batch_size,
                         images=default_image_root(meta / f"{split}.json", records), judge=judge, progress=False)
            s = json.loads(done.read_text())
            res[split] = {k: s.get(k) for k in KEYS}
        return res

    res = json.loads(a.out.read_text()) if a.out.exists() else {}
    if res.get("run") != str(a.run) or res.get("val_n") != len(splits["val"]):
        res = {"run": str(a.run), "val_n": len(splits["val"]), "models": {}}
    ci = res["ci"] = scored("ci", a.run / "ci")
    tests = list(demo.splits)
    for rel in a.models.split(","):
        model = a.run / rel
        base = "qponder" if rel == "qponder" else model.name
        per_step = {}
        for step, folder in candidates(model).items():
            name = base if folder == model else f"{base}_c{step}"
            m = scored(name, folder)
            per_step[step] = {"metrics": m, "srcc_delta": {s: round(m[s]["srcc"] - ci[s]["srcc"], 4)
                                                            for s in ["val", *tests]}}
        last = max(per_step, key=int)
        # ties go to the later checkpoint: the final model is the default, a choice has to beat it
        best = max(per_step, key=lambda k: (per_step[k]["metrics"]["val"]["srcc"], int(k)))
        res["models"][rel] = {"steps": per_step, "final": last, "selected": best}
        print(rel, "selected step", best, "final", per_step[last]["srcc_delta"], "selected",
              per_step[best]["srcc_delta"], flush=True)

    rows = res["models"].values()
    res["summary"] = {
        "n_models": len(res["models"]),
        "final_srcc_delta_mean": {s: round(statistics.fmean(r["steps"][r["final"]]["srcc_delta"][s] for r in rows), 4)
                                  for s in ["val", *tests]},
        "selected_srcc_delta_mean": {s: round(statistics.fmean(r["steps"][r["selected"]]["srcc_delta"][s]
                                                               for r in rows), 4) for s in ["val", *tests]},
        "selected_not_final": sum(r["selected"] != r["final"] for r in rows),
        # across every checkpoint of every run: does a better validation change mean a better test change?
        "val_test_delta_spearman": {s: round(float(spearmanr(
            [p["srcc_delta"]["val"] for r in rows for p in r["steps"].values()],
            [p["srcc_delta"][s] for r in rows for p in r["steps"].values()]).statistic), 4) for s in tests},
        "n_checkpoints": sum(len(r["steps"]) for r in rows),
    }
    print(json.dumps(res["summary"], indent=1))
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
