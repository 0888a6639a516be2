"""Block 6 against block 4 of the frozen DINOv2 tower, paired by seed, under the demo's current stage-1 recipe.

Seed 0 is the whole demo at each block (``qponder demo --set student.vision_layers=6`` against the default); seeds
1 and 2 are ``benchmarks/ci_variants.py`` arms (the no-CoT stage, then CoT SFT from it: the demo's curriculum).
Reads their results and writes the per-seed differences and their means (docs/results.md, stop 32).

    python benchmarks/vision_block.py --demo4 runs/demo29 --demo6 runs/demo32
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

SPLITS = ("test", "test_xtype", "test_compound")
# (seed, block) -> (no-CoT arm, CI arm) in the ci_variants results files
ARMS = {(1, 4): ("nocot600_bf16_lr3e4_s1", "ci600_bf16_lr3e4_from_nocot_s1"),
        (1, 6): ("nocot600_bf16_lr3e4_layers6_s1", "ci600_bf16_lr3e4_layers6_s1"),
        (2, 4): ("nocot600_bf16_lr3e4_s2", "ci600_bf16_lr3e4_from_nocot_s2"),
        (2, 6): ("nocot600_bf16_lr3e4_layers6_s2", "ci600_bf16_lr3e4_layers6_s2")}


def _pick(split_stats: dict) -> dict:
    return {s: {"srcc": split_stats[s]["srcc"], "family_acc": split_stats[s].get("family_acc")} for s in SPLITS}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--demo4", type=Path, default=Path("runs/demo29"))
    ap.add_argument("--demo6", type=Path, default=Path("runs/demo32"))
    ap.add_argument("--variants", nargs="+", type=Path, default=[Path("benchmarks/results/ci_variants_stop29.json"),
                                                                  Path("benchmarks/results/ci_variants_stop32.json")])
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/vision_block_stop32.json"))
    a = ap.parse_args()
    from scipy.stats import ttest_1samp

    variants = {}
    for f in a.variants:
        variants.update(json.loads(f.read_text()))
    runs = {}  # (seed, block) -> {"nocot": {...}, "ci": {...}}
    for block, demo in ((4, a.demo4), (6, a.demo6)):
        models = json.loads((demo / "summary.json").read_text())["models"]
        runs[(0, block)] = {"nocot": _pick(models["sft_no_reasoning"]), "ci": _pick(models["ci"]),
                            "source": str(demo / "summary.json")}
    for (seed, block), (nocot, ci) in ARMS.items():
        if nocot in variants and ci in variants:
            runs[(seed, block)] = {"nocot": _pick(variants[nocot]["no_think"]), "ci": _pick(variants[ci]["think"]),
                                   "source": f"{nocot}, {ci}"}
    seeds = sorted({s for s, b in runs if (s, 4) in runs and (s, 6) in runs})
    diffs = {m: {s: [runs[(seed, 6)][m][s]["srcc"] - runs[(seed, 4)][m][s]["srcc"] for seed in seeds] for s in SPLITS}
             for m in ("nocot", "ci")}
    fam = [runs[(seed, 6)]["ci"]["test"]["family_acc"] - runs[(seed, 4)]["ci"]["test"]["family_acc"] for seed in seeds]
    out = {"seeds": seeds, "runs": {f"s{s}_block{b}": v for (s, b), v in sorted(runs.items())},
           "srcc_diff_block6_minus_block4": diffs,
           "mean_srcc_diff": {m: {s: statistics.mean(v) for s, v in d.items()} for m, d in diffs.items()},
           "ci_family_acc_test_diff": fam, "mean_ci_family_acc_test_diff": statistics.mean(fam),
           # issue 6 asks no-CoT < CI: how far each block's no-CoT model sits above its own CI, per seed and split
           "nocot_minus_ci": {b: [runs[(seed, b)]["nocot"][s]["srcc"] - runs[(seed, b)]["ci"][s]["srcc"]
                                  for seed in seeds for s in SPLITS] for b in (4, 6)},
           # paired over seeds, two-sided: a description beside the pre-written rule, which reads the means
           "ttest_p_two_sided": {m: {s: float(ttest_1samp(v, 0.0).pvalue) for s, v in d.items()}
                                 for m, d in diffs.items()} if len(seeds) > 2 else None}
    a.out.write_text(json.dumps(out, indent=1))
    print("| model | seed | block 4 SRCC test / xtype / compound | block 6 | block 6 - block 4 | CI family acc. (test) 4 / 6 |")
    print("|---|---|---|---|---|---|")
    for m, name in (("nocot", "no-CoT"), ("ci", "CI")):
        for seed in seeds:
            r4, r6 = runs[(seed, 4)][m], runs[(seed, 6)][m]
            fa = (f"{r4['test']['family_acc']:.3f} / {r6['test']['family_acc']:.3f}" if m == "ci" else "-")
            print(f"| {name} | {seed} | " + " / ".join(f"{r4[s]['srcc']:.3f}" for s in SPLITS) + " | "
                  + " / ".join(f"{r6[s]['srcc']:.3f}" for s in SPLITS) + " | "
                  + " / ".join(f"{r6[s]['srcc'] - r4[s]['srcc']:+.3f}" for s in SPLITS) + f" | {fa} |")
        print(f"| **{name}, mean** | | | | " + " / ".join(f"**{out['mean_srcc_diff'][m][s]:+.3f}**" for s in SPLITS)
              + (f" | {out['mean_ci_family_acc_test_diff']:+.3f} |" if m == "ci" else " | |"))
    for b, gap in out["nocot_minus_ci"].items():
        print(f"block {b}: no-CoT above its CI on {sum(g > 0 for g in gap)} of {len(gap)} seed-splits, "
              f"mean {statistics.mean(gap):+.3f}")
    if out["ttest_p_two_sided"]:
        print("paired t-test p (two-sided):", {m: {s: round(p, 3) for s, p in d.items()}
                                               for m, d in out["ttest_p_two_sided"].items()})


if __name__ == "__main__":
    main()
