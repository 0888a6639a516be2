"""Does the consistency term change the consistency rate? Every paired GRPO run of stops 5-31, pooled.

Each stop's ``grpo_arms`` results hold GRPO runs from one Q-Ponder-CI with the same recipe and seed, with and
without the consistency term. One stop has 3-5 such pairs, too few to tell a small effect from the seed. This
script pools the pairs of all stops (21 at the gated weight 0.25, 3 at weight 1.0, the ungated term's ten
seeds, from stop 21 both terms inside the preset with the degradation term, ten seeds each, from stop 22 the
threshold-gated term, from stop 24 that term with every term normalised within its group, from stops 25-26 the
same pair at three times the steps, from stop 27 the same pair with 8 rollouts per image, from stop 28 the
term paid by the evidence judge, and from stops 30-31 two forms of the term from a CI trained with its answers
decoupled from its reasoning) and tests the paired differences with scipy: the greedy consistency rate on each
held-out split, the written answer's SRCC, and the family accuracy; and, where ``group_rewards.py`` measured both
runs of a pair, the sampled policy's consistency rate. It trains nothing; it reads
``benchmarks/results/grpo_arms_*.json`` and ``group_rewards*.json``.

    .venv/bin/python benchmarks/consistency_effect.py     # -> benchmarks/results/consistency_effect.json
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from scipy import stats

RESULTS = Path(__file__).parent / "results"
SPLITS = ("test", "test_xtype", "test_compound")

# (file, arm with the term, file, arm without it, seeds, the term as used, what else differs from the demo)
S11 = "grpo_arms_stop11.json"
PAIRS = [
    ("grpo_arms_stop5.json", "qponder", None, "accuracy", [0, 1, 2], "gated 0.25", "stop 5's CI, 2 images x 8 rollouts"),
    ("grpo_arms_stop6.json", "qponder", None, "accuracy", [0, 1, 2], "gated 0.25", "stop 6's CI, 2 images x 8 rollouts"),
    ("grpo_arms_stop8.json", "qponder", None, "accuracy_g4", [0, 1, 2], "gated 0.25", "stop 8's CI"),
    ("grpo_arms_stop8.json", "qponder_norank", None, "accuracy_g4", [3, 4], "gated 0.25", "stop 8's CI"),
    ("grpo_arms_stop8.json", "qponder_rank_g4", None, "acc_rank_g4", [0, 1, 2], "gated 0.25",
     "stop 8's CI, ranking 0.5 in both"),
    ("grpo_arms_stop9.json", "qponder_lr5e5", None, "accuracy_lr5e5", [0, 1, 2], "gated 0.25", "stop 8's CI, lr 5e-5"),
    (S11, "qponder", None, "accuracy", [0, 1, 2, 3], "gated 0.25", "the 384-wide CI (the demo's since stop 12)"),
    ("grpo_arms_stop5.json", "consistency1", None, "accuracy", [0, 1, 2], "gated 1.0", "stop 5's CI, 2 images x 8 rollouts"),
    # stop 12: the accuracy factor dropped (rewards.consistency(gate=False)), at the largest weight that keeps the
    # promise; seeds 0-3 without the term are stop 11's runs, evaluated again into this file
    ("grpo_arms_stop12.json", "ungated", None, "accuracy", list(range(10)), "ungated 0.2", "the 384-wide CI"),
    # stop 21: the term inside the preset (degradation 0.25 in every arm), from stop 16's CI; the gated runs are
    # stops 18 and 20's, the runs without the term stop 21's
    ("grpo_arms_stop21.json", "ung20", None, "nocons", list(range(10)), "ungated 0.2, with degradation",
     "stop 16's CI"),
    ("grpo_arms_stop18.json", "deg", "grpo_arms_stop21.json", "nocons", list(range(5)),
     "gated 0.25, with degradation", "stop 16's CI"),
    ("grpo_arms_stop20.json", "deg", "grpo_arms_stop21.json", "nocons", list(range(5, 10)),
     "gated 0.25, with degradation", "stop 16's CI"),
    # stop 22: the threshold gate (paid only within 0.35 of the MOS), free of the weight cap, at 0.5; from stop 22's
    # fp32 CI, each arm in its own one-thread process
    ("grpo_arms_stop22_thr.json", "thr", "grpo_arms_stop22_nocons.json", "nocons", list(range(10)),
     "threshold-gated 0.5, with degradation", "stop 22's fp32 CI"),
    # stop 24: every term normalised within its group before the weighted sum (TRL's normalize_then_sum, GDPO), so
    # the weights set each term's share of the advantage; the threshold-gated term at 1.0; from the same fp32 CI
    ("grpo_arms_stop24.json", "gdpo_thr1", None, "gdpo_none", list(range(10)),
     "threshold-gated 1.0, per-term normalised, with degradation", "stop 22's fp32 CI (runs/demo23)"),
    # stops 25-26: the same two arms at three times the steps (180); seed 0 ran its arms one after the other on two
    # threads (stop 25), later seeds side by side, one thread each, into one file per arm (stop 26)
    ("grpo_arms_stop25_long.json", "gdpo_thr1_180", None, "gdpo_none_180", [0],
     "threshold-gated 1.0, per-term normalised, with degradation, 180 steps", "stop 22's fp32 CI (runs/demo23)"),
    ("grpo_arms_stop26_long_thr1.json", "gdpo_thr1_180", "grpo_arms_stop26_long_none.json", "gdpo_none_180",
     list(range(1, 10)), "threshold-gated 1.0, per-term normalised, with degradation, 180 steps",
     "stop 22's fp32 CI (runs/demo23)"),
    # stop 27: the same two arms at 60 steps with 8 rollouts per image at the same batch (4 images x 8), so that
    # fewer groups hold one value of the term; from stop 27's CI (AMD EPYC, bf16)
    ("grpo_arms_stop27_g8.json", "gdpo_thr1_g8", None, "gdpo_none_g8", list(range(20)),
     "threshold-gated 1.0, per-term normalised, with degradation, 8 rollouts", "stop 27's bf16 CI (runs/demo27)"),
    # stop 28: the same two arms at 60 steps and 4 rollouts, the term paid by a judge that reads the reasoning
    # without its verdict sentence (qponder judge fit --reads evidence); the greedy rates here are the run's
    # whole-text judge's, judge_reading.py --pair tests the evidence judge's
    ("grpo_arms_stop28_ev.json", "gdpo_ev1", None, "gdpo_none", list(range(20)),
     "threshold-gated 1.0, evidence judge, per-term normalised, with degradation", "stop 27's bf16 CI (runs/demo27)"),
    # stops 30-31, the positive control: a CI whose targets close with another trace's MOS in half the traces
    # (benchmarks/decoupled_ci.py), so its answers follow its reasoning less often (rate 0.760 against 0.846); the
    # threshold-gated term at 1.0 (stop 30), then the ungated one at 0.2 (stop 31), both against stop 30's runs
    ("grpo_arms_stop30_pc.json", "gdpo_t1", None, "gdpo_none", list(range(5)),
     "threshold-gated 1.0, per-term normalised, with degradation, decoupled CI", "runs/pc30's decoupled CI"),
    ("grpo_arms_stop31_ug.json", "gdpo_ug20", None, "gdpo_none", list(range(5)),
     "ungated 0.2, per-term normalised, with degradation, decoupled CI", "runs/pc30's decoupled CI"),
]
# The same pairs measured on the sampled policy (benchmarks/group_rewards.py: 96 training images x 4 rollouts at
# temperature 1, as GRPO samples them): the rate the term acts on, where the greedy rate sees only the mode.
# (run, arm with the term, run, arm without it, the term as used). Stop 22's run rebuilt stop 16's CI to the last
# digit (docs/results.md, stop 22), so its arms pair with stop 21's runs of the same seeds.
SAMPLED = [("runs/demo_lm384", "qponder", "runs/demo_lm384", "accuracy", "gated 0.25"),
           ("runs/demo_lm384", "ungated", "runs/demo_lm384", "accuracy", "ungated 0.2"),
           ("runs/demo16", "ung20", "runs/demo16", "nocons", "ungated 0.2, with degradation"),
           ("runs/demo16", "deg", "runs/demo16", "nocons", "gated 0.25, with degradation"),
           ("runs/demo22f", "thr", "runs/demo22f", "nocons", "threshold-gated 0.5, with degradation"),
           ("runs/demo23", "gdpo_thr1", "runs/demo23", "gdpo_none",
            "threshold-gated 1.0, per-term normalised, with degradation"),
           ("runs/pc30", "gdpo_t1", "runs/pc30", "gdpo_none",
            "threshold-gated 1.0, per-term normalised, with degradation, decoupled CI"),
           ("runs/pc30", "gdpo_ug20", "runs/pc30", "gdpo_none",
            "ungated 0.2, per-term normalised, with degradation, decoupled CI")]


def pairs(results: Path) -> list[dict]:
    rows = []
    for file, with_term, other, without, seeds, term, note in PAIRS:
        if not (results / file).exists() or (other and not (results / other).exists()):
            continue
        arms = json.loads((results / file).read_text())["arms"]
        arms_without = json.loads((results / other).read_text())["arms"] if other else arms
        for seed in seeds:
            if (f"{with_term}_s{seed}" not in arms.get(with_term, {}).get("runs", {})
                    or f"{without}_s{seed}" not in arms_without.get(without, {}).get("runs", {})):
                continue  # not run yet
            a = arms[with_term]["runs"][f"{with_term}_s{seed}"]["metrics"]
            b = arms_without[without]["runs"][f"{without}_s{seed}"]["metrics"]
            row = {"file": file, "with": f"{with_term}_s{seed}", "without": f"{without}_s{seed}", "term": term,
                   "setting": note}
            for s in SPLITS:
                row[f"consistency_{s}"] = a[s]["consistency_rate"] - b[s]["consistency_rate"]
                row[f"srcc_{s}"] = a[s]["srcc"] - b[s]["srcc"]
            row["family_acc_test"] = a["test"]["family_acc"] - b["test"]["family_acc"]
            row["rates_with_without"] = (statistics.fmean(a[s]["consistency_rate"] for s in SPLITS),
                                         statistics.fmean(b[s]["consistency_rate"] for s in SPLITS))
            row["consistency_min"] = (min(a[s]["consistency_rate"] for s in SPLITS),
                                      min(b[s]["consistency_rate"] for s in SPLITS))
            rows.append(row)
    return rows


def budget(rows: list[dict], short: str, long: str) -> dict:
    """The same seeds at two budgets: does the term's effect grow with the steps, and where do both arms go?

    Seeds are matched by number; the two budgets' runs share the start, the data order and the seed, not the
    learning-rate schedule (it decays over max_steps), so this compares the recipes, not one run's checkpoints."""
    by = {t: {int(r["with"].rsplit("_s", 1)[1]): r for r in rows if r["term"] == t} for t in (short, long)}
    seeds = sorted(set(by[short]) & set(by[long]))
    if len(seeds) < 2:
        return {}
    rate = {t: [by[t][sd]["rates_with_without"] for sd in seeds] for t in by}
    diff = {t: [w - wo for w, wo in rate[t]] for t in by}  # the mean of the splits' differences
    return {"seeds": seeds,
            "effect_short": [round(x, 4) for x in diff[short]], "effect_long": [round(x, 4) for x in diff[long]],
            "long_minus_short": test([b - a for a, b in zip(diff[short], diff[long])]),
            "rate_with_short_long": [round(statistics.fmean(r[0] for r in rate[t]), 4) for t in (short, long)],
            "rate_without_short_long": [round(statistics.fmean(r[1] for r in rate[t]), 4) for t in (short, long)]}


def sampled_models(results: Path) -> dict[tuple[str, str], dict]:
    """(run, model) -> its group_rewards.py measures, from every comparable file."""
    models = {}
    for f in sorted(results.glob("group_rewards*.json")):
        d = json.loads(f.read_text())
        st = d["setting"]
        if (st.get("images"), st.get("seed"), st.get("temperature"), st.get("group", 4)) != (96, 0, 1.0, 4):
            continue  # other images, sampling seeds or group sizes: not comparable
        if st.get("reward_kwargs", {}).get("consistency", {}).get("judge"):
            continue  # rates read by another judge than the run's
        for model, v in d["models"].items():
            models[(st["run"], model)] = v
    return models


def sampled_pairs(models: dict[tuple[str, str], dict]) -> list[dict]:
    rows = []
    for run, with_term, run_without, without, term in SAMPLED:
        for seed in range(20):
            a = models.get((run, f"ablation/{with_term}_s{seed}"))
            b = models.get((run_without, f"ablation/{without}_s{seed}"))
            if a is not None and b is not None:
                a, b = a["consistency_rate"], b["consistency_rate"]
                rows.append({"run": run, "with": f"{with_term}_s{seed}", "run_without": run_without,
                             "without": f"{without}_s{seed}", "term": term, "sampled_consistency": round(a - b, 4),
                             "rates": [a, b]})
    return rows


def sampled_arm_means(models: dict[tuple[str, str], dict], rows: list[dict]) -> dict:
    """Per run and arm, over the seeds that have a pair: the mean of the sampled measures docs/results.md quotes."""
    out: dict = {}
    for r in rows:
        for run, arm in ((r["run"], r["with"]), (r["run_without"], r["without"])):
            per_seed = out.setdefault(run, {}).setdefault(arm.rsplit("_s", 1)[0], {})
            per_seed[arm] = models[(run, f"ablation/{arm}")]
    keys = {"consistency_rate": lambda v: v["consistency_rate"], "mean_abs_error": lambda v: v["mean_abs_error"],
            "consistency_rate_right": lambda v: v["consistency_rate_right"],
            "consistency_rate_wrong": lambda v: v["consistency_rate_wrong"],
            "consistency_variance_share": lambda v: v["variance_share"].get("consistency"),
            "consistency_groups_varying": lambda v: v.get("groups_varying", {}).get("consistency"),
            "implied_mae": lambda v: v.get("implied_mae"),
            "pairs_reordered": lambda v: v.get("pairs_reordered")}
    for run, arms in out.items():
        for arm, runs in arms.items():
            means = {"seeds": len(runs)}
            for k, get in keys.items():
                vals = [get(v) for v in runs.values() if get(v) is not None]
                means[k] = round(statistics.fmean(vals), 4) if vals else None
            arms[arm] = means
    return out


def test(diffs: list[float]) -> dict:
    """Paired differences (with the term minus without): mean, sd, how many are positive, t-test and Wilcoxon."""
    t = stats.ttest_1samp(diffs, 0.0)
    w = stats.wilcoxon(diffs) if any(diffs) else None
    lo, hi = t.confidence_interval(0.95)
    return {"n": len(diffs), "mean": round(statistics.fmean(diffs), 4), "sd": round(statistics.stdev(diffs), 4),
            "ci95": [round(float(lo), 4), round(float(hi), 4)],
            "positive": sum(d > 0 for d in diffs), "negative": sum(d < 0 for d in diffs),
            "t_p": round(float(t.pvalue), 4), "wilcoxon_p": None if w is None else round(float(w.pvalue), 4)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", type=Path, default=RESULTS)
    ap.add_argument("--out", type=Path, default=RESULTS / "consistency_effect.json")
    a = ap.parse_args()
    rows = pairs(a.results)
    out: dict = {"pairs": rows, "tests": {}}
    for weight in dict.fromkeys(r["term"] for r in rows):
        group = [r for r in rows if r["term"] == weight]
        keys = [f"consistency_{s}" for s in SPLITS] + [f"srcc_{s}" for s in SPLITS] + ["family_acc_test"]
        res = {k: test([r[k] for r in group]) for k in keys}
        res["consistency_mean_of_splits"] = test([statistics.fmean(r[f"consistency_{s}"] for s in SPLITS) for r in group])
        # the tail: the lowest rate a run reached on any split, with the term and without
        res["lowest_rate_with_without"] = [round(min(r["consistency_min"][0] for r in group), 3),
                                           round(min(r["consistency_min"][1] for r in group), 3)]
        res["runs_below_0.8_with_without"] = [sum(r["consistency_min"][0] < 0.8 for r in group),
                                              sum(r["consistency_min"][1] < 0.8 for r in group)]
        out["tests"][weight] = res
    gdpo = "threshold-gated 1.0, per-term normalised, with degradation"
    out["budget_60_vs_180_steps"] = budget(rows, gdpo, gdpo + ", 180 steps")
    models = sampled_models(a.results)
    out["sampled_pairs"] = sampled_pairs(models)
    out["sampled_arm_means"] = sampled_arm_means(models, out["sampled_pairs"])
    for weight in dict.fromkeys(r["term"] for r in out["sampled_pairs"]):
        diffs = [r["sampled_consistency"] for r in out["sampled_pairs"] if r["term"] == weight]
        if len(diffs) > 1:
            out["tests"].setdefault(weight, {})["sampled_consistency"] = test(diffs)
    a.out.write_text(json.dumps(out, indent=1))
    for weight, res in out["tests"].items():
        print(f"consistency term {weight}:")
        for k, v in res.items():
            print(f"  {k}: {v}")


if __name__ == "__main__":
    main()
