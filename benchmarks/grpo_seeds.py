"""Is Q-Ponder's gain over Q-Ponder-CI larger than GRPO's own seed noise?

Starts from a demo run folder (``qponder demo``): its Q-Ponder-CI (``ci/``), judge, and Q-Ponder (``qponder/``,
GRPO seed = the demo's). Trains GRPO again from the same CI with the demo's recipe and other seeds (rollout
sampling and data order change; the start and budget do not), evaluates each with the demo's evaluator, and
writes per-seed and mean SRCC changes over the CI (``benchmarks/results/grpo_seeds.json``).

    python benchmarks/grpo_seeds.py --run runs/demo --seeds 1,2
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from pathlib import Path

KEYS = ("srcc", "plcc", "family_acc", "consistency_rate", "mean_tokens")


def main() -> None:
    from qponder.config import build
    from qponder.demo import DemoRecipe, Run, evaluate_all
    from qponder.train.grpo import GRPORecipe, train

    ap = argparse.ArgumentParser()
    ap.add_argument("--run", type=Path, default=Path("runs/demo"))
    ap.add_argument("--seeds", default="1,2")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/grpo_seeds.json"))
    a = ap.parse_args()
    demo = build(DemoRecipe, a.run / "demo.yaml")
    base_seed = GRPORecipe(**demo.grpo).seed
    seeds = [int(s) for s in a.seeds.split(",")]
    extra, seconds = {}, {}
    for seed in seeds:
        name = f"qponder_seed{seed}"
        model_dir = a.run / "ablation" / name
        if not (model_dir / "model.safetensors").exists():
            t0 = time.time()
            train(GRPORecipe(**{**demo.grpo, "seed": seed, "model": str(a.run / "ci"),
                                "data": str(a.run / "synth" / "metas" / "train.json"), "out": str(model_dir)}))
            seconds[name] = round(time.time() - t0, 1)
        extra[name] = model_dir
    evaluate_all(Run(dataclasses.replace(demo, out=str(a.run))), a.run / "judge" / "judge.json", extra=extra)

    def summary(name: str) -> dict:
        return {s: {k: json.loads((a.run / "eval" / name / s / "summary.json").read_text()).get(k) for k in KEYS}
                for s in demo.splits}

    ci = summary("ci")
    runs = {f"qponder_seed{base_seed}": summary("qponder")} | {n: summary(n) for n in extra}
    delta = {n: {s: round(m[s]["srcc"] - ci[s]["srcc"], 4) for s in demo.splits} for n, m in runs.items()}
    fam = {n: round(m["test"]["family_acc"] - ci["test"]["family_acc"], 4) for n, m in runs.items()}
    mean = {s: round(statistics.fmean(d[s] for d in delta.values()), 4) for s in demo.splits}
    sd = {s: round(statistics.stdev(d[s] for d in delta.values()), 4) if len(delta) > 1 else None
          for s in demo.splits}
    res = {"run": str(a.run), "grpo_recipe": demo.grpo, "ci": ci, "qponder": runs, "srcc_delta": delta,
           "srcc_delta_mean": mean, "srcc_delta_sd": sd, "family_acc_delta_test": fam, "grpo_seconds": seconds}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=1))
    for n, d in delta.items():
        print(n, d, "family acc change", fam[n])
    print("mean", mean, "sd", sd)


if __name__ == "__main__":
    main()
