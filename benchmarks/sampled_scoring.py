"""Greedy vs sampled-mean scoring of the demo's students: does averaging N sampled answers beat the handful of
discrete greedy scores? (``Scorer(samples=N)``; temperature 1.0, seeded.)

    python benchmarks/sampled_scoring.py --run runs/demo --samples 8
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    from qponder.data.records import load_records
    from qponder.eval.evaluate import evaluate
    from qponder.score import Scorer, VLMPredictor

    ap = argparse.ArgumentParser()
    ap.add_argument("--run", type=Path, default=Path("runs/demo"))
    ap.add_argument("--models", default="ci,qponder")
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--stride", type=int, default=4)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/sampled_scoring.json"))
    a = ap.parse_args()
    meta = a.run / "synth" / "metas" / "test.json"
    recs = load_records(meta)[:: a.stride]
    res = {"run": str(a.run), "samples": a.samples, "n": len(recs), "models": {}}
    for m in a.models.split(","):
        greedy = json.loads((a.run / "eval" / m / "test" / "summary.json").read_text())
        pred = VLMPredictor(Scorer.from_pretrained(a.run / m, max_new_tokens=256), samples=a.samples, seed=0)
        s = evaluate(pred, meta, a.run / "eval_sampled" / m / "test", records=recs, progress=False)
        res["models"][m] = {"greedy": {k: greedy.get(k) for k in ("srcc", "plcc", "parse_fail_rate")},
                            "sampled_mean": {k: s.get(k) for k in ("srcc", "plcc", "parse_fail_rate",
                                                                   "images_per_second")}}
        print(m, res["models"][m], flush=True)
        a.out.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
