"""GRPO learning-rate / reward-mix sweep from one Q-Ponder-CI: what GRPO does to the score distribution.

Each run: ``steps`` GRPO steps (2 images x 8 rollouts per step, 192 tokens, beta 0.04) from ``--ci``, then a
greedy eval on every 4th image of qponder-synth ``test``. Besides SRCC it records the spread and the number of
distinct predicted scores, and how well the *reasoning alone* (through the consistency judge) ranks the images,
which is what tells a collapse of the answers apart from a loss of perception.

    OMP_NUM_THREADS=1 python benchmarks/grpo_sweep.py --ci runs/bench/stage1/ci_teacher --work runs/bench/grpo_sweep \\
        --run lr2e-5:2e-5:qponder --run lr1e-4:1e-4:qponder --run lr5e-4:5e-4:qponder \\
        --run rank1e-4:1e-4:'{"format":0.2,"accuracy_continuous":1.0,"consistency":0.25,"ranking":0.5}'
"""

from __future__ import annotations

import argparse
import json
import statistics as st
import time
from pathlib import Path


def score_stats(pred_file: Path) -> dict:
    from scipy.stats import spearmanr

    from qponder.judge import load_judge
    from qponder.models.answer import parse

    rows = [json.loads(line) for line in pred_file.read_text().splitlines()]
    rows = [r for r in rows if r["score"] is not None]
    s, mos = [r["score"] for r in rows], [r["mos"] for r in rows]
    implied = load_judge(None).implied([parse(r["text"]).reasoning for r in rows])
    ok = [(i, m) for i, m in zip(implied, mos) if i is not None]
    return {"score_mean": round(st.fmean(s), 3), "score_std": round(st.pstdev(s), 3), "distinct_scores": len(set(s)),
            "implied_vs_mos_srcc": round(float(spearmanr(*zip(*ok)).statistic), 4) if len(ok) > 2 else None}


def main() -> None:
    from qponder.data.records import load_records
    from qponder.eval.evaluate import evaluate
    from qponder.score import Scorer, VLMPredictor
    from qponder.train.grpo import GRPORecipe, train

    ap = argparse.ArgumentParser()
    ap.add_argument("--ci", type=Path, required=True)
    ap.add_argument("--synth", type=Path, default=Path("runs/bench/synth"))
    ap.add_argument("--work", type=Path, default=Path("runs/bench/grpo_sweep"))
    ap.add_argument("--run", action="append", required=True, help="NAME:LR:REWARDS (preset name or JSON mapping)")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/grpo_sweep.json"))
    a = ap.parse_args()
    res = json.loads(a.out.read_text()) if a.out.exists() else {"ci": str(a.ci), "steps": a.steps, "runs": {}}
    meta = a.synth / "metas" / "test.json"
    test = load_records(meta)[::4]

    def ev(name: str, model: Path) -> dict:
        out = a.work / name / "eval"
        s = evaluate(VLMPredictor(Scorer.from_pretrained(model, max_new_tokens=256)), meta, out, records=test,
                     progress=False)
        keys = ("n", "srcc", "plcc", "family_acc", "parse_fail_rate", "mean_tokens", "consistency_rate")
        return {**{k: s.get(k) for k in keys}, **score_stats(out / "predictions.jsonl")}

    res["runs"]["ci"] = ev("ci", a.ci)
    for spec in a.run:
        name, lr, rewards = spec.split(":", 2)
        model = a.work / name
        t0 = time.time()
        if not (model / "model.safetensors").exists():
            train(GRPORecipe(model=str(a.ci), data=str(a.synth / "metas" / "train.json"), out=str(model),
                             max_steps=a.steps, learning_rate=float(lr),
                             rewards=json.loads(rewards) if rewards.startswith("{") else rewards,
                             per_device_train_batch_size=16, num_generations=8, max_completion_length=192,
                             report_to="none", logging_steps=2, save_steps=10 ** 6))
            res.setdefault("seconds", {})[name] = round(time.time() - t0, 1)
        logs = [h for h in json.loads((model / "trainer_state.json").read_text()) if "reward" in h]
        res["runs"][name] = {"lr": float(lr), "rewards": rewards, **ev(name, model),
                             "kl_last": logs[-1].get("kl"), "reward_std_mean": round(st.fmean(h["reward_std"] for h in logs), 4)}
        print(name, res["runs"][name], flush=True)
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(res, indent=1))
    a.out.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
