"""A Q-Ponder-CI whose answers are partly decoupled from its reasoning: a start that leaves the consistency term
something to fix (issue 5's positive control).

Trains the demo's CI stage again (same start, traces, recipe and seed) on traces of which a fixed random
fraction closes with another kept trace's MOS (a permutation within that fraction), so in those targets the answer
does not follow the reasoning. The new run folder links the source run's synth, student and judge, and the eval
folders of the models that did not change (baselines, teacher, no-CoT, Q-Ponder; the no-CoT model itself too,
the CI's start where the run's recipe says ``ci_from_no_reasoning``), so that
``benchmarks/grpo_arms.py --run OUT`` trains and evaluates GRPO arms from this CI like from the demo's.

    python benchmarks/decoupled_ci.py --run runs/demo29 --out runs/pc30 --fraction 0.5 --seed 29
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

LINKED = ("synth", "student", "judge", "sft_no_reasoning")
UNCHANGED_EVAL = ("brisque", "niqe", "teacher", "sft_no_reasoning", "qponder")


def decouple(rows: list[dict], fraction: float, seed: int) -> list[dict]:
    """The rows with ``fraction`` of the kept ones closing on a permuted MOS (marked ``decoupled``, true MOS kept)."""
    kept = [i for i, d in enumerate(rows) if d.get("kept")]
    rng = random.Random(seed)
    chosen = sorted(rng.sample(kept, round(fraction * len(kept))))
    moved = chosen[:]
    while len(chosen) > 1 and any(a == b for a, b in zip(chosen, moved)):  # a derangement: every answer moves
        rng.shuffle(moved)
    out = [dict(d) for d in rows]
    for i, j in zip(chosen, moved):
        out[i].update(mos=rows[j]["mos"], mos_true=rows[i]["mos"], decoupled=True)
    return out


def main() -> None:
    import dataclasses

    from qponder.config import build, typed
    from qponder.demo import DemoRecipe, Run, evaluate_all
    from qponder.train.sft import SFTRecipe, train

    ap = argparse.ArgumentParser()
    ap.add_argument("--run", type=Path, default=Path("runs/demo"))
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--fraction", type=float, default=0.5)
    ap.add_argument("--seed", type=int, default=29)
    a = ap.parse_args()
    src, out = a.run.resolve(), a.out
    out.mkdir(parents=True, exist_ok=True)
    for name in LINKED:
        if (src / name).exists() and not (out / name).exists():
            (out / name).symlink_to(src / name)
    for name in UNCHANGED_EVAL:
        if (src / "eval" / name).is_dir() and not (out / "eval" / name).exists():
            (out / "eval").mkdir(exist_ok=True)
            (out / "eval" / name).symlink_to(src / "eval" / name)
    (out / "demo.yaml").write_text((src / "demo.yaml").read_text())
    demo = build(DemoRecipe, out / "demo.yaml")

    data = out / "distill" / "train.jsonl"
    if not data.exists():
        rows = [json.loads(line) for line in (src / "distill" / "train.jsonl").read_text().splitlines()]
        data.parent.mkdir(parents=True, exist_ok=True)
        data.write_text("".join(json.dumps(d) + "\n" for d in decouple(rows, a.fraction, a.seed)))
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    kept = [d for d in rows if d.get("kept")]
    info = {"source": str(a.run), "fraction": a.fraction, "seed": a.seed, "kept": len(kept),
            "decoupled": sum(bool(d.get("decoupled")) for d in kept)}
    if not (out / "ci" / "model.safetensors").exists():
        t0 = time.time()
        sft = typed(SFTRecipe, demo.sft, f"{out}/demo.yaml `sft`")
        start = out / ("sft_no_reasoning" if demo.ci_from_no_reasoning else "student")  # as the demo's `ci` stage
        train(SFTRecipe(**{"report_to": "tensorboard", **sft, "model": str(start), "data": str(data),
                           "out": str(out / "ci"), "reasoning": True}))
        info["sft_seconds"] = round(time.time() - t0, 1)
        (out / "ci" / "decoupled.json").write_text(json.dumps(info, indent=1))
    evaluate_all(Run(dataclasses.replace(demo, out=str(out))), out / "judge" / "judge.json")
    print(json.dumps(info))


if __name__ == "__main__":
    main()
