"""How far GRPO moved: each run's logged reward terms, KL, within-group reward spread, entropy and gradient norm
early and late in training, averaged per arm.

Reads the ``trainer_state.json`` that every GRPO run writes (TRL's log history) and, per arm, averages over its
seeds the first and last ``--window`` logged steps of each reward term's mean, the KL to the reference and the
share of groups with no reward spread. It trains nothing.

    .venv/bin/python benchmarks/grpo_logs.py \\
        --runs 'runs/demo23/ablation/gdpo_thr1_s*' 'runs/demo23/ablation/gdpo_none_s*' \\
        --out benchmarks/results/grpo_logs_stop25.json
"""

from __future__ import annotations

import argparse
import glob
import json
import statistics
from pathlib import Path

from qponder.report import grpo_log


def summary(run: Path, window: int) -> dict:
    logs = grpo_log(run)
    if len(logs) < 2 * window:
        raise SystemExit(f"{run}/trainer_state.json: {len(logs)} logged steps, fewer than 2 x --window {window}")
    # the within-group spread (reward_std), the token entropy and the gradient norm say how much the policy has left
    # to learn from and how far each step pushes it; the reward means and KL say where it went
    keys = [k for k in logs[0] if (k.startswith("rewards/") and k.endswith("/mean"))
            or k in ("kl", "reward", "reward_std", "entropy", "grad_norm")]
    out = {}
    for k in keys:
        out[k] = {"first": statistics.fmean(h[k] for h in logs[:window]),
                  "last": statistics.fmean(h[k] for h in logs[-window:])}
    out["frac_reward_zero_std"] = statistics.fmean(h.get("frac_reward_zero_std", 0.0) for h in logs)
    out["steps"] = logs[-1]["step"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", nargs="+", required=True, help="one glob per arm, e.g. 'runs/x/ablation/name_s*'")
    ap.add_argument("--window", type=int, default=5, help="logged steps averaged at each end")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    arms = {}
    for pattern in a.runs:
        runs = sorted(Path(p) for p in glob.glob(pattern) if (Path(p) / "trainer_state.json").exists())
        if not runs:
            raise SystemExit(f"--runs {pattern!r}: no run folder with a trainer_state.json")
        per_run = {r.name: summary(r, a.window) for r in runs}
        first = next(iter(per_run.values()))
        mean = {k: {end: round(statistics.fmean(v[k][end] for v in per_run.values() if k in v), 4)
                    for end in ("first", "last")} for k in first if isinstance(first[k], dict)}
        mean["frac_reward_zero_std"] = round(statistics.fmean(v["frac_reward_zero_std"] for v in per_run.values()), 4)
        arms[pattern] = {"runs": sorted(per_run), "steps": {r: v["steps"] for r, v in per_run.items()}, "mean": mean}
        print(pattern, json.dumps(mean))
    a.out.write_text(json.dumps({"window": a.window, "arms": arms}, indent=1))


if __name__ == "__main__":
    main()
