"""Stage-2 arms from one Q-Ponder-CI, each over several GRPO seeds: is a change larger than GRPO's own noise?

Starts from a demo run folder (``qponder demo``): its Q-Ponder-CI (``ci/``), judge, and Q-Ponder (``qponder/``,
the demo's GRPO recipe with its seed). Each arm is the demo's GRPO recipe plus overrides (a reward mix, a
learning rate...), trained from the same CI once per seed (seeds change rollout sampling and data order; the
start and the budget stay), then evaluated with the demo's evaluator. Writes per-run SRCC changes over the CI
and their mean and spread per arm (``benchmarks/results/grpo_arms.json``, merged with earlier runs of the script).

    python benchmarks/grpo_arms.py --run runs/demo --seeds 0,1,2 --arm qponder={} \\
        --arm degradation='{"rewards": {"format": 0.2, "accuracy_continuous": 1, "consistency": 0.25, "degradation": 0.5}}'
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from pathlib import Path

KEYS = ("srcc", "srcc_expected", "plcc", "family_acc", "consistency_rate", "mean_tokens")


def main() -> None:
    from qponder.config import build, typed
    from qponder.demo import DemoRecipe, Run, evaluate_all, grpo_reward_kwargs
    from qponder.train.grpo import GRPORecipe, train

    ap = argparse.ArgumentParser()
    ap.add_argument("--run", type=Path, default=Path("runs/demo"))
    ap.add_argument("--arm", action="append", required=True, help="NAME=JSON overrides of the demo's GRPO recipe")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/grpo_arms.json"))
    a = ap.parse_args()
    demo = build(DemoRecipe, a.run / "demo.yaml")
    # typed like the demo's own GRPO stage: a --set section in demo.yaml may hold "2e-05" as a string
    base = {**typed(GRPORecipe, demo.grpo, f"{a.run}/demo.yaml `grpo`"),
            "model": str(a.run / "ci"), "data": str(a.run / "synth" / "metas" / "train.json")}
    arms = {name: json.loads(js) for name, js in (x.split("=", 1) for x in a.arm)}
    seeds = [int(s) for s in a.seeds.split(",")]
    demo_seed = GRPORecipe(**base).seed
    res = json.loads(a.out.read_text()) if a.out.exists() else {}
    if res.get("run") != str(a.run):
        res = {"run": str(a.run), "grpo_recipe": demo.grpo, "arms": {}}

    folders: dict[str, Path] = {}
    for arm, over in arms.items():
        for seed in seeds:
            name = f"{arm}_s{seed}"
            if not over and seed == demo_seed:  # the demo's own Q-Ponder
                folders[name] = a.run / "qponder"
                continue
            folders[name] = model_dir = a.run / "ablation" / name
            if not (model_dir / "model.safetensors").exists():
                t0 = time.time()
                over = typed(GRPORecipe, over, f"arm {arm}")
                recipe = {**base, **over, "seed": seed, "out": str(model_dir)}
                # the run's own judge, as in the demo (before stop 7 the arms read the packaged one)
                recipe["reward_kwargs"] = grpo_reward_kwargs(recipe, a.run / "judge" / "judge.json")
                train(GRPORecipe(**recipe))
                # kept beside the model: a later call with other seeds rewrites the arm's entry in the results
                (model_dir / "arm_seconds.json").write_text(json.dumps(round(time.time() - t0, 1)))
    extra = {n: p for n, p in folders.items() if p != a.run / "qponder"}
    evaluate_all(Run(dataclasses.replace(demo, out=str(a.run))), a.run / "judge" / "judge.json", extra=extra)

    def summary(name: str) -> dict:
        return {s: {k: json.loads((a.run / "eval" / name / s / "summary.json").read_text()).get(k) for k in KEYS}
                for s in demo.splits}

    ci = summary("ci")
    res["ci"] = ci
    for arm, over in arms.items():
        runs, prev = {}, res["arms"].get(arm, {})
        for seed in seeds:
            name = f"{arm}_s{seed}"
            m = summary("qponder" if folders[name] == a.run / "qponder" else name)
            timed = folders[name] / "arm_seconds.json"
            earlier = prev.get("runs", {}).get(name, {})  # runs timed before arm_seconds.json
            took = json.loads(timed.read_text()) if timed.exists() else earlier.get("seconds")
            runs[name] = {"metrics": m, "seconds": took,
                          "srcc_delta": {s: round(m[s]["srcc"] - ci[s]["srcc"], 4) for s in demo.splits},
                          "srcc_expected_delta": {s: _delta(m[s], ci[s], "srcc_expected") for s in demo.splits},
                          "family_acc_delta_test": round(m["test"]["family_acc"] - ci["test"]["family_acc"], 4)}
        arm_seeds = seeds
        if prev.get("overrides") == over:  # a call with other seeds adds to the arm instead of dropping its runs
            runs = {**{n: r for n, r in prev.get("runs", {}).items() if n not in runs}, **runs}
            arm_seeds = sorted(set(seeds) | set(prev.get("seeds", [])))
        deltas = {s: [r["srcc_delta"][s] for r in runs.values()] for s in demo.splits}
        exp = {s: [r["srcc_expected_delta"][s] for r in runs.values()] for s in demo.splits}
        fam = [r["family_acc_delta_test"] for r in runs.values()]
        res["arms"][arm] = {
            "overrides": over, "seeds": arm_seeds, "runs": runs,
            "srcc_delta_mean": {s: round(statistics.fmean(v), 4) for s, v in deltas.items()},
            "srcc_delta_sd": {s: round(statistics.stdev(v), 4) if len(v) > 1 else None for s, v in deltas.items()},
            "family_acc_delta_mean": round(statistics.fmean(fam), 4)}
        if all(None not in v for v in exp.values()):  # runs evaluated before stop 7 have no expected score
            res["arms"][arm]["srcc_expected_delta_mean"] = {s: round(statistics.fmean(v), 4) for s, v in exp.items()}
        print(arm, "SRCC change over CI, mean", res["arms"][arm]["srcc_delta_mean"], "sd",
              res["arms"][arm]["srcc_delta_sd"], "family acc change", res["arms"][arm]["family_acc_delta_mean"],
              "expected-score SRCC change, mean", res["arms"][arm].get("srcc_expected_delta_mean"))
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=1))


def _delta(m: dict, ci: dict, key: str) -> float | None:
    return None if m.get(key) is None or ci.get(key) is None else round(m[key] - ci[key], 4)


if __name__ == "__main__":
    main()
