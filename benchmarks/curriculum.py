"""No-CoT-then-CoT curriculum: CoT SFT (Q-Ponder-CI recipe) started from the answer-only SFT model instead of
the fresh student. Same traces, steps and lr as the demo's `ci` stage; greedy eval on the demo's splits.

    python benchmarks/curriculum.py --init runs/demo/sft_no_reasoning --out runs/bench/curriculum
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main() -> None:
    from qponder.data.records import load_records
    from qponder.eval.evaluate import evaluate
    from qponder.score import Scorer, VLMPredictor
    from qponder.train.sft import SFTRecipe, train

    ap = argparse.ArgumentParser()
    ap.add_argument("--init", default="runs/demo/sft_no_reasoning")
    ap.add_argument("--data", default="runs/demo/distill/train.jsonl")
    ap.add_argument("--synth", type=Path, default=Path("runs/demo/synth"))
    ap.add_argument("--out", type=Path, default=Path("runs/bench/curriculum"))
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--results", type=Path, default=Path("benchmarks/results/curriculum.json"))
    a = ap.parse_args()
    res = {"init": a.init, "steps": a.steps, "lr": a.lr, "sft_seconds": None, "splits": {}}
    if not (a.out / "model.safetensors").exists():  # an existing model is only re-evaluated
        t0 = time.time()
        train(SFTRecipe(model=a.init, data=a.data, out=str(a.out), max_steps=a.steps, learning_rate=a.lr,
                        report_to="none", logging_steps=50, save_steps=10 ** 6))
        res["sft_seconds"] = round(time.time() - t0, 1)
    for split in ("test", "test_xtype", "test_compound"):
        meta = a.synth / "metas" / f"{split}.json"
        recs = load_records(meta)
        recs = recs[::4] if split == "test" else recs
        s = evaluate(VLMPredictor(Scorer.from_pretrained(a.out, max_new_tokens=256)), meta, a.out / "eval" / split,
                     records=recs, progress=False)
        res["splits"][split] = {k: s.get(k) for k in ("n", "srcc", "plcc", "family_acc", "parse_fail_rate",
                                                      "mean_tokens", "consistency_rate")}
        print(split, res["splits"][split], flush=True)
    a.results.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
