"""Stage 2 ablation: Q-Ponder-CI vs GRPO with each reward mix, same start, seed and budget.

Starts from a demo run folder (``qponder demo``), which already holds Q-Ponder-CI (``ci/``), the judge fitted on
its traces (``judge/judge.json``), Q-Ponder with the full ``qponder`` reward (``qponder/``) and their evals.
This script trains the other mixes from the same CI with the demo's GRPO recipe, evaluates each on the same
splits, and writes one table (``benchmarks/results/stage2.json``):

    qponder (accuracy + consistency) | accuracy (no consistency) | q-insight (threshold) | visualquality-r1 (ranking)

    python benchmarks/stage2.py --run runs/demo
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

KEYS = ("n", "srcc", "plcc", "krcc", "parse_fail_rate", "family_acc", "severity_acc", "consistency_rate",
        "consistency_gap", "mean_tokens")
MIXES = ("qponder", "accuracy", "q-insight", "visualquality-r1")


def grpo_log_stats(model_dir: Path) -> dict:
    """Mean reward std inside groups and share of zero-variance groups: why GRPO does (not) move."""
    logs = [h for h in json.loads((model_dir / "trainer_state.json").read_text()) if "reward" in h]
    mean = lambda k: round(sum(h[k] for h in logs if k in h) / max(1, sum(k in h for h in logs)), 4)  # noqa: E731
    return {"reward_std": mean("reward_std"), "frac_reward_zero_std": mean("frac_reward_zero_std"),
            "kl_last": logs[-1].get("kl") if logs else None, "reward_first": logs[0]["reward"] if logs else None,
            "reward_last": logs[-1]["reward"] if logs else None,
            "completion_length": mean("completions/mean_length")}


def main() -> None:
    from qponder.config import build
    from qponder.demo import DemoRecipe, Run, evaluate_all
    from qponder.train.grpo import GRPORecipe, train

    ap = argparse.ArgumentParser()
    ap.add_argument("--run", type=Path, default=Path("runs/demo"))
    ap.add_argument("--mixes", default=",".join(MIXES[1:]))
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/stage2.json"))
    a = ap.parse_args()
    demo = build(DemoRecipe, a.run / "demo.yaml")
    times = json.loads((a.run / "stages.json").read_text())
    res = json.loads(a.out.read_text()) if a.out.exists() else {}
    res.update({"run": str(a.run), "grpo_recipe": demo.grpo, "models": res.get("models", {}),
                "seconds": res.get("seconds", {}), "grpo": res.get("grpo", {})})
    res["seconds"]["qponder"] = times.get("grpo", {}).get("seconds")

    for mix in a.mixes.split(","):
        name = f"grpo_{mix}"
        model_dir = a.run / "ablation" / name
        if not (model_dir / "model.safetensors").exists():
            t0 = time.time()
            overrides = {k: v for k, v in demo.grpo.items() if k not in ("rewards", "reward_kwargs")}
            train(GRPORecipe(**{**overrides, "rewards": mix, "model": str(a.run / "ci"),
                                "data": str(a.run / "synth" / "metas" / "train.json"), "out": str(model_dir)}))
            res["seconds"][name] = round(time.time() - t0, 1)
        res["grpo"][name] = grpo_log_stats(model_dir)

    # evaluate every ablation model with the demo's evaluator (same splits, stride, judge)
    run = Run(dataclasses.replace(demo, out=str(a.run)))
    names = ["ci", "qponder"] + [f"grpo_{m}" for m in a.mixes.split(",")]
    evaluate_all(run, a.run / "judge" / "judge.json", extra={f"grpo_{m}": a.run / "ablation" / f"grpo_{m}"
                                                              for m in a.mixes.split(",")})
    res["grpo"]["qponder"] = grpo_log_stats(a.run / "qponder")
    for name in names:
        res["models"][name] = {}
        for split in demo.splits:
            s = json.loads((a.run / "eval" / name / split / "summary.json").read_text())
            res["models"][name][split] = {k: s.get(k) for k in KEYS}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=1))
    print(table(res, demo.splits))


def table(res: dict, splits) -> str:
    rows = ["| model | " + " | ".join(f"{s} SRCC / PLCC" for s in splits)
            + " | family acc | consistency rate | mean tokens | GRPO s |", "|" + "---|" * (len(splits) + 5)]
    for name, per in res["models"].items():
        t = per.get("test", {})
        cells = [f"{per[s]['srcc']:.3f} / {per[s]['plcc']:.3f}" for s in splits]
        sec = res["seconds"].get(name)
        rows.append(f"| {name} | " + " | ".join(cells) + f" | {t.get('family_acc')} | {t.get('consistency_rate')} | "
                    f"{t.get('mean_tokens')} | {sec if sec is not None else '-'} |")
    return "\n".join(rows)


if __name__ == "__main__":
    main()
