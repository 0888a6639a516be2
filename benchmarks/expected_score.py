"""The written answer against its digits' expectation, for the reasoning models of a demo run.

Re-scores each model (greedy, the demo's evaluator and splits) into ``RUN/eval_expected/NAME/SPLIT``, checks
that recording the digit logits left every greedy completion as the demo's own eval wrote it, and compares
SRCC/PLCC of the answer with those of the expected score (``qponder.models.expected``). Results go to
``benchmarks/results/expected_score.json`` (merged per run and model).

    python benchmarks/expected_score.py --run runs/demo_stop6 --models sft_no_reasoning,ci,qponder
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main() -> None:
    from qponder.config import build
    from qponder.data.records import load_records
    from qponder.demo import DemoRecipe
    from qponder.eval.evaluate import default_image_root, evaluate, make_predictor, read_predictions

    ap = argparse.ArgumentParser()
    ap.add_argument("--run", type=Path, default=Path("runs/demo"))
    ap.add_argument("--models", default="sft_no_reasoning,ci,qponder",
                    help="folders of the run (ablation/NAME for the stage-2 arms)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/expected_score.json"))
    a = ap.parse_args()
    demo = build(DemoRecipe, a.run / "demo.yaml")
    meta = a.run / "synth" / "metas"
    splits = {s: load_records(meta / f"{s}.json")[:: demo.test_stride if s == "test" else 1] for s in demo.splits}
    res = json.loads(a.out.read_text()) if a.out.exists() else {}
    for spec in a.models.split(","):
        name = Path(spec).name
        folder = a.run / spec
        predictor = make_predictor(str(folder), think=name != "sft_no_reasoning", batch_size=demo.batch_size,
                                   max_new_tokens=demo.max_new_tokens)
        for split, records in splits.items():
            out = a.run / "eval_expected" / name / split
            t0 = time.time()
            s = evaluate(predictor, meta / f"{split}.json", out, records=records, batch_size=demo.batch_size,
                         images=default_image_root(meta / f"{split}.json", records))
            demo_eval = a.run / "eval" / name / split / "predictions.jsonl"
            earlier = {r["image"]: r["text"] for r in read_predictions(demo_eval)}
            rows = read_predictions(out / "predictions.jsonl")
            same = sum(earlier.get(r["image"]) == r["text"] for r in rows)
            res.setdefault(str(a.run), {}).setdefault(name, {})[split] = {
                "n": s["n"], "answer": {"srcc": s["srcc"], "plcc": s["plcc"], "krcc": s["krcc"]},
                "expected": {k: s.get(f"{k}_expected") for k in ("srcc", "plcc", "krcc")},
                "expected_missing_rate": s.get("expected_missing_rate"), "parse_fail_rate": s["parse_fail_rate"],
                "distinct_answers": len({r["score"] for r in rows if r["ok"]}),
                "same_text_as_demo_eval": f"{same}/{len(rows)}" if earlier else None,
                "seconds": round(time.time() - t0, 1)}
            r = res[str(a.run)][name][split]
            print(f"{name:>18} {split:>14}: answer SRCC {r['answer']['srcc']:.3f}  expected SRCC "
                  f"{r['expected']['srcc']:.3f}  same text {r['same_text_as_demo_eval']}", flush=True)
            a.out.parent.mkdir(parents=True, exist_ok=True)
            a.out.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
