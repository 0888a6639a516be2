"""SRCC along a GRPO run: every kept checkpoint of the named runs, evaluated like the demo's models.

A GRPO run keeps its last ``save_total_limit`` checkpoints (``checkpoints/checkpoint-N``). Each is evaluated
greedy on the demo's splits (``qponder.demo.evaluate_all``, into ``RUN/eval/NAME@N``) and set beside the run's
final model and the CI it started from, so a longer run reads as a curve rather than one end point.

    python benchmarks/grpo_checkpoints.py --run runs/demo29 --models long150_s0,long150_s1
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import yaml

KEYS = ("srcc", "srcc_expected", "family_acc", "consistency_rate")


def main() -> None:
    from qponder.config import build
    from qponder.demo import DemoRecipe, Run, evaluate_all

    ap = argparse.ArgumentParser()
    ap.add_argument("--run", type=Path, default=Path("runs/demo"))
    ap.add_argument("--models", required=True, help="GRPO run folders under RUN/ablation, comma-separated")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/grpo_checkpoints.json"))
    a = ap.parse_args()
    demo = build(DemoRecipe, a.run / "demo.yaml")
    extra, steps = {}, {}
    for name in a.models.split(","):
        folder = a.run / "ablation" / name
        if not (folder / "model.safetensors").exists():
            raise SystemExit(f"{folder}: no finished GRPO model")
        final = yaml.safe_load((folder / "recipe.yaml").read_text())["max_steps"]  # what the final model ran
        steps[name] = {final: name}
        for ckpt in sorted(folder.glob("checkpoints/checkpoint-*"), key=lambda p: int(p.name.split("-")[1])):
            n = int(ckpt.name.split("-")[1])
            if n != final:  # the last checkpoint holds the final model's weights, evaluated under its own name
                extra[f"{name}@{n}"] = ckpt
                steps[name][n] = f"{name}@{n}"
    evaluate_all(Run(dataclasses.replace(demo, out=str(a.run))), a.run / "judge" / "judge.json",
                 extra={**extra, **{n: a.run / "ablation" / n for n in steps}})

    def summary(name: str) -> dict:
        return {s: {k: json.loads((a.run / "eval" / name / s / "summary.json").read_text()).get(k) for k in KEYS}
                for s in demo.splits}

    ci = summary("ci")
    res = {"run": str(a.run), "ci": ci, "models": {}}
    print("| run | step | SRCC change over the CI, " + " / ".join(demo.splits) + " | family acc. (test) |")
    print("|---|---|---|---|")
    for name, by_step in steps.items():
        res["models"][name] = {}
        for n in sorted(by_step):
            m = summary(by_step[n])
            d = {s: round(m[s]["srcc"] - ci[s]["srcc"], 4) for s in demo.splits}
            res["models"][name][str(n)] = {"metrics": m, "srcc_delta": d}
            print(f"| {name} | {n} | " + " / ".join(f"{v:+.3f}" for v in d.values())
                  + f" | {m['test']['family_acc']:.3f} |")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
