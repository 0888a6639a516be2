"""Does GRPO lower the reasoning's family accuracy? Paired per image, against the CI it started from.

Issue 5 asks for the SRCC gain "without lower reasoning accuracy". Each GRPO run's family accuracy differs from the
CI's by a few points either way, and one run's 280 `test` images cannot tell that from chance. This reads the
greedy predictions that ``grpo_arms.py`` already wrote (``<run>/eval/<model>/<split>/predictions.jsonl``), scores
each distorted image's reasoning as the evaluator does (``qponder.eval.reasoning``: the family the reasoning names
most; a compound counts either family), and reports per model and split:

- the accuracy change and the discordant pairs (CI right and model wrong, and the reverse), with McNemar's exact
  test (scipy's binomial test on the discordant pairs);
- per group of models (an arm's seeds), the mean change over its models, with a 95 % interval from resampling
  the images (the same resampled images for every model of the group, so the interval is over images, not seeds).

A group whose interval lies above -margin is "not lower" by more than the margin at 95 %. Trains nothing.

    python benchmarks/family_paired.py --run runs/demo16 --group 'demo=qponder,base_s3,base_s4' \\
        --group 'deg=deg_s0,deg_s1,deg_s2,deg_s3,deg_s4' --out benchmarks/results/family_paired_stop18.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy import stats

SPLITS = ("test", "test_xtype", "test_compound")  # and "all": the three pooled


def hits(pred_file: Path) -> dict[str, int]:
    """image -> 1 if the reasoning names the labelled family (distorted images with a reasoning only)."""
    from qponder.eval.reasoning import named_family
    from qponder.models.answer import parse

    if not pred_file.exists():
        raise SystemExit(f"{pred_file}: no predictions (evaluate the model on this split first)")
    out = {}
    for i, line in enumerate(pred_file.read_text().splitlines(), 1):
        try:
            r = json.loads(line)
        except json.JSONDecodeError as e:
            raise SystemExit(f"{pred_file}:{i}: not JSON ({e})") from None
        fam = r.get("family")
        text = parse(r["text"]).reasoning if r.get("text") else None
        if not fam or fam == "none" or text is None:
            continue
        named = named_family(text)
        out[r["image"]] = int(named is not None and named in fam.split("+"))
    return out


def paired(ci: dict[str, int], model: dict[str, int]) -> dict:
    common = sorted(ci.keys() & model.keys())
    a = np.array([ci[k] for k in common])
    b = np.array([model[k] for k in common])
    lost, gained = int(((a == 1) & (b == 0)).sum()), int(((a == 0) & (b == 1)).sum())
    p = stats.binomtest(lost, lost + gained).pvalue if lost + gained else 1.0
    return {"n": len(common), "ci_acc": round(float(a.mean()), 4), "acc": round(float(b.mean()), 4),
            "delta": round(float(b.mean() - a.mean()), 4), "lost": lost, "gained": gained, "mcnemar_p": round(p, 4)}


def group_interval(ci: dict[str, int], models: list[dict[str, int]], reps: int, rng) -> dict:
    common = sorted(set(ci).intersection(*models))
    a = np.array([ci[k] for k in common])
    d = np.array([[m[k] for k in common] for m in models]) - a  # models x images
    per_image = d.mean(axis=0)  # the group's mean change, image by image
    boot = per_image[rng.integers(0, len(common), size=(reps, len(common)))].mean(axis=1)
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return {"n": len(common), "models": len(models), "delta": round(float(per_image.mean()), 4),
            "ci95": [round(float(lo), 4), round(float(hi), 4)]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--ci", default="ci", help="the reference model's eval folder name")
    ap.add_argument("--group", action="append", required=True, help="name=model,model,... (eval folder names)")
    ap.add_argument("--reps", type=int, default=10000)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/family_paired.json"))
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    res = {"run": str(a.run), "ci": a.ci, "reps": a.reps, "groups": {}}
    for spec in a.group:
        name, _, models = spec.partition("=")
        if not models:
            raise SystemExit(f"--group {spec!r}: expected name=model,model,...")
        g = res["groups"][name] = {"models": models.split(","), "splits": {}}
        every_ci, every_m = {}, [{} for _ in g["models"]]  # the three splits as one set of images
        for split in SPLITS + ("all",):
            if split == "all":
                ci, ms = every_ci, every_m
            else:
                ci = hits(a.run / "eval" / a.ci / split / "predictions.jsonl")
                ms = [hits(a.run / "eval" / m / split / "predictions.jsonl") for m in g["models"]]
                every_ci.update({f"{split}/{k}": v for k, v in ci.items()})
                for acc, h in zip(every_m, ms):
                    acc.update({f"{split}/{k}": v for k, v in h.items()})
            g["splits"][split] = {"pooled": group_interval(ci, ms, a.reps, rng),
                                  "per_model": {m: paired(ci, h) for m, h in zip(g["models"], ms)}}
            pooled = g["splits"][split]["pooled"]
            print(f"{name:8s} {split:14s} n={pooled['n']} delta {pooled['delta']:+.4f} 95% {pooled['ci95']}  "
                  + " ".join(f"{v['delta']:+.3f}(p={v['mcnemar_p']:.2f})"
                             for v in g["splits"][split]["per_model"].values()), flush=True)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
