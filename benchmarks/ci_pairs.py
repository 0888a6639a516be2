"""Paired differences between `benchmarks/ci_variants.py` arms (one arm with a change, one without, same seed).

    python benchmarks/ci_pairs.py --pair ci600_bf16_lr3e4_from_nocot_perceive_s0:ci600_bf16_lr3e4_from_nocot ...

Reads the arms from the results files named (later files win), prints a markdown table of greedy SRCC and family
accuracy per pair with their means, and writes them to --out. ``ARM@no_think`` reads that arm's answer-only
evaluation (a no-CoT arm's only one), so ``--pair CI_ARM:NOCOT_ARM@no_think`` gives a CI's gap over its no-CoT model.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

SPLITS = ("test", "test_xtype", "test_compound")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pair", action="append", required=True, help="ARM_WITH:ARM_WITHOUT")
    ap.add_argument("--results", nargs="+", type=Path, default=[Path("benchmarks/results/ci_variants_stop29.json"),
                                                                 Path("benchmarks/results/ci_variants_stop32.json")])
    ap.add_argument("--mode", default="think", choices=("think", "no_think"))
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    arms = {}
    for f in a.results:
        arms.update(json.loads(f.read_text()))
    def read(name: str) -> dict | None:
        arm, _, mode = name.partition("@")
        return arms.get(arm, {}).get(mode or a.mode)

    rows = []
    for pair in a.pair:
        with_, without = pair.split(":")
        missing = [n for n in (with_, without) if not read(n)]
        if missing:
            raise SystemExit(f"{', '.join(missing)}: not in {', '.join(map(str, a.results))} (mode {a.mode})")
        m1, m0 = read(with_), read(without)
        rows.append({"with": with_, "without": without,
                     "srcc": {s: [m0[s]["srcc"], m1[s]["srcc"]] for s in SPLITS},
                     "family_acc_test": [m0["test"].get("family_acc"), m1["test"].get("family_acc")],
                     "distinct_scores_test": [m0["test"]["distinct_scores"], m1["test"]["distinct_scores"]]})
    diffs = [r["srcc"][s][1] - r["srcc"][s][0] for r in rows for s in SPLITS]
    mean = {"srcc_diff": {s: statistics.mean(r["srcc"][s][1] - r["srcc"][s][0] for r in rows) for s in SPLITS},
            "lower_seed_splits": f"{sum(d < 0 for d in diffs)} of {len(diffs)}"}
    if all(None not in r["family_acc_test"] for r in rows):
        mean["family_acc_test_diff"] = statistics.mean(r["family_acc_test"][1] - r["family_acc_test"][0] for r in rows)
    a.out.write_text(json.dumps({"mode": a.mode, "pairs": rows, "mean": mean}, indent=1))
    print("| pair (with : without) | SRCC without, test / xtype / compound | with | with − without "
          "| family acc. (test) without / with | distinct scores (test) without / with |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        fam = r["family_acc_test"]
        print(f"| {r['with']} : {r['without']} | " + " / ".join(f"{r['srcc'][s][0]:.3f}" for s in SPLITS) + " | "
              + " / ".join(f"{r['srcc'][s][1]:.3f}" for s in SPLITS) + " | "
              + " / ".join(f"{r['srcc'][s][1] - r['srcc'][s][0]:+.3f}" for s in SPLITS)
              + (f" | {fam[0]:.3f} / {fam[1]:.3f}" if None not in fam else " | -")
              + f" | {r['distinct_scores_test'][0]} / {r['distinct_scores_test'][1]} |")
    print("| **mean** | | | " + " / ".join(f"**{v:+.3f}**" for v in mean["srcc_diff"].values())
          + (f" | **{mean['family_acc_test_diff']:+.3f}** | |" if "family_acc_test_diff" in mean else " | | |"))
    print(f"with lower than without on {mean['lower_seed_splits']} seed-splits")


if __name__ == "__main__":
    main()
