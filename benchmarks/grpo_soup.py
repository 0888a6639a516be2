"""Average the weights of several GRPO runs from one Q-Ponder-CI (a "model soup"), and evaluate the average.

GRPO at the demo's budget moves the CI little (final KL about 0.004) but in a direction its sampled rollouts
decide, so single runs scatter around their mean. Runs that start from the same weights and stay this close to
them can be averaged (Wortsman et al., 2022, model soups); if the scatter is noise around a shared direction,
the average keeps the direction and drops the noise. Evaluated with the demo's evaluator, like the arms.

    python benchmarks/grpo_soup.py --run runs/demo --name qponder5 \\
        --models qponder,ablation/qponder_s1,ablation/qponder_s2
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
from pathlib import Path

SPLIT_KEYS = ("srcc", "srcc_expected", "plcc", "family_acc", "consistency_rate")


def average(folders: list[Path], out: Path) -> None:
    import torch
    from safetensors.torch import load_file, save_file

    states = [load_file(f / "model.safetensors") for f in folders]
    keys = set(states[0])
    for f, s in zip(folders, states):
        if set(s) != keys:
            raise SystemExit(f"{f}: its tensors differ from {folders[0]}'s; only runs of one architecture average")
    soup = {}
    for k in states[0]:
        if states[0][k].is_floating_point():
            soup[k] = torch.stack([s[k].float() for s in states]).mean(0).to(states[0][k].dtype)
        else:
            soup[k] = states[0][k]
    out.mkdir(parents=True, exist_ok=True)
    for item in folders[0].iterdir():  # config, tokenizer, processor: identical across runs of one CI
        if item.is_file() and item.name != "model.safetensors" and item.suffix in (".json", ".jinja", ".txt", ".model"):
            shutil.copy2(item, out / item.name)
    save_file(soup, out / "model.safetensors", metadata={"format": "pt"})
    (out / "soup.json").write_text(json.dumps({"models": [str(f) for f in folders]}, indent=1))


def main() -> None:
    from qponder.config import build
    from qponder.demo import DemoRecipe, Run, evaluate_all

    ap = argparse.ArgumentParser()
    ap.add_argument("--run", type=Path, default=Path("runs/demo"))
    ap.add_argument("--name", required=True)
    ap.add_argument("--models", required=True, help="comma-separated folders, relative to the run")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/grpo_soup.json"))
    a = ap.parse_args()
    demo = build(DemoRecipe, a.run / "demo.yaml")
    folders = [a.run / m for m in a.models.split(",")]
    soup = a.run / "ablation" / f"soup_{a.name}"
    if not (soup / "model.safetensors").exists():
        average(folders, soup)
    evaluate_all(Run(dataclasses.replace(demo, out=str(a.run))), a.run / "judge" / "judge.json",
                 extra={f"soup_{a.name}": soup})

    def summary(name: str) -> dict:
        return {s: {k: json.loads((a.run / "eval" / name / s / "summary.json").read_text()).get(k) for k in SPLIT_KEYS}
                for s in demo.splits}

    ci, got = summary("ci"), summary(f"soup_{a.name}")
    delta = {k: {s: None if got[s][k] is None or ci[s][k] is None else round(got[s][k] - ci[s][k], 4)
                 for s in demo.splits} for k in ("srcc", "srcc_expected", "family_acc")}
    res = json.loads(a.out.read_text()) if a.out.exists() else {}
    res[f"{a.run}:{a.name}"] = {"models": [str(f) for f in folders], "metrics": got, "ci": ci, "delta": delta}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=1))
    print(a.name, "change over the CI", json.dumps(delta))


if __name__ == "__main__":
    main()
