"""What does each reward term contribute to GRPO's advantages, and does GRPO change the sampled rollouts?

GRPO learns only from differences between the rollouts of one image: the advantage of a rollout is its total
reward minus its group's mean, over the group's spread. A term whose value hardly differs inside a group, or
that only repeats another term, cannot teach anything, whatever its weight. This samples groups of rollouts
the way the demo's GRPO does (temperature 1.0, top-p 1.0, the same completion length) on training images, scores
them with the recipe's reward terms, and reports per model:

- each term's share of the within-group variance of the total reward (the covariance of the weighted term with
  the total, over the total's variance, summed over groups: the shares add up to 1);
- how often the full mix orders two rollouts of a group differently from the mix without consistency
  (``pairs_reordered``), i.e. how often the consistency term changes which rollout GRPO prefers;
- the sampled rollouts' parse rate, consistency rate (|implied - answer| < 0.5, the evaluator's rule) and mean
  |answer - MOS|: what GRPO acts on, where the greedy evaluation sees only the mode;
- per term, the share of groups in which it differs between rollouts at all (``groups_varying``): a term that is
  equal across a group gives every rollout the same advantage from it, however it is weighted;
- on images with a single distortion family, how often a sampled rollout names that family, and how often all
  rollouts of a group name the same family (``family_named_rate``, ``family_same_in_group``).

Same images and sampling seeds for every model, so models differ only by their weights.

    python benchmarks/group_rewards.py --run runs/demo --models ci,qponder,ablation/accuracy_s1
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import statistics
import time
from pathlib import Path


def main() -> None:
    from PIL import Image

    from qponder.config import build, typed
    from qponder.data.records import check_images, load_records
    from qponder.demo import DemoRecipe, grpo_reward_kwargs
    from qponder.errors import QPonderError
    from qponder.eval.evaluate import default_image_root
    from qponder.judge import load_judge
    from qponder.rewards import weights
    from qponder.score import Scorer
    from qponder.train.grpo import GRPORecipe, check_batch, reward_functions

    ap = argparse.ArgumentParser()
    ap.add_argument("--run", type=Path, default=Path("runs/demo"))
    ap.add_argument("--models", required=True, help="comma-separated model folders, relative to the run")
    ap.add_argument("--rewards", default="qponder", help="the mix to decompose: a preset name or JSON weights")
    ap.add_argument("--reward-kwargs", default="{}", help='JSON settings per term, e.g. {"consistency": {"gate": false}}')
    ap.add_argument("--images", type=int, default=96)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--num-generations", type=int, help="rollouts per image (default: the demo recipe's); the "
                    "images per generate call follow from the recipe's batch, as in GRPO")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/group_rewards.json"))
    a = ap.parse_args()
    demo = build(DemoRecipe, a.run / "demo.yaml")
    g = GRPORecipe(**typed(GRPORecipe, demo.grpo, f"{a.run}/demo.yaml `grpo`"))
    if a.num_generations:
        g = dataclasses.replace(g, num_generations=a.num_generations)
        try:  # the groups must fill the recipe's batch, as in GRPO
            check_batch(g, world_size=1)
        except QPonderError as e:
            raise SystemExit(f"--num-generations {a.num_generations}: {e}") from None
    mix = weights(json.loads(a.rewards) if a.rewards.startswith("{") else a.rewards)
    if "consistency" not in mix:
        raise SystemExit(f"--rewards {a.rewards}: the mix has no consistency term to compare against")
    judge_path = a.run / "judge" / "judge.json"
    reward_kwargs = json.loads(a.reward_kwargs)
    kwargs = grpo_reward_kwargs({"rewards": mix, "reward_kwargs": reward_kwargs}, judge_path)
    funcs, ws = reward_functions(mix, kwargs)
    w = {f.__name__: x for f, x in zip(funcs, ws) if x}
    judge = load_judge(kwargs["consistency"]["judge"])  # the rates read by the judge that pays the term

    meta = a.run / "synth" / "metas" / "train.json"
    recs = load_records(meta)
    root = default_image_root(meta, recs)
    recs = check_images(recs, root, source=str(meta))
    recs = recs[:: max(1, len(recs) // a.images)][: a.images]
    per_step = g.per_device_train_batch_size // g.num_generations  # images per generate call, as in one step

    res = json.loads(a.out.read_text()) if a.out.exists() else {}
    setting = {"run": str(a.run), "rewards": mix, **({"reward_kwargs": reward_kwargs} if reward_kwargs else {}),
               "images": len(recs), "group": g.num_generations,
               "temperature": g.temperature, "max_completion_length": g.max_completion_length, "seed": a.seed}
    if res.get("setting") != setting:
        res = {"setting": setting, "models": {}}
    for rel in a.models.split(","):
        t0 = time.time()
        scorer = Scorer.from_pretrained(a.run / rel, max_new_tokens=g.max_completion_length,
                                        temperature=g.temperature, batch_size=per_step * g.num_generations)
        groups = []  # per image: (record, [completion texts])
        for i in range(0, len(recs), per_step):
            batch = recs[i:i + per_step]
            images = [Image.open(r.path(root)).convert("RGB") for r in batch for _ in range(g.num_generations)]
            texts = [t for t, _, _ in scorer.generate(images, do_sample=True, seed=a.seed + i)]
            groups += [(r, texts[k * g.num_generations:(k + 1) * g.num_generations]) for k, r in enumerate(batch)]
        res["models"][rel] = summarize(groups, funcs, w, judge)
        res["models"][rel]["seconds"] = round(time.time() - t0, 1)
        print(rel, json.dumps(res["models"][rel]), flush=True)
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(res, indent=1))


def summarize(groups, funcs, w: dict, judge) -> dict:
    from qponder.eval.reasoning import CONSISTENT_WITHIN as within
    from qponder.eval.reasoning import named_family
    from qponder.models.answer import parse

    share = dict.fromkeys(w, 0.0)
    sums = dict.fromkeys(w, 0.0)
    total_var = 0.0
    reordered = pairs = 0
    parsed = consistent = judged = 0
    errors = []
    pairs_sr = []  # (answer, implied, MOS) of every judged answer
    n = 0
    varying = dict.fromkeys(w, 0)
    fam_right = fam_seen = same_groups = fam_groups = 0
    for rec, texts in groups:
        cols = {"mos": [rec.mos] * len(texts), "family": [rec.family] * len(texts), "level": [rec.level] * len(texts)}
        terms = {f.__name__: [0.0 if v is None else v for v in f(texts, **cols)] for f in funcs if f.__name__ in w}
        full = [sum(w[k] * terms[k][j] for k in w) for j in range(len(texts))]
        without = [sum(w[k] * terms[k][j] for k in w if k != "consistency") for j in range(len(texts))]
        mean = statistics.fmean(full)
        var = sum((x - mean) ** 2 for x in full)
        total_var += var
        for k in w:
            sums[k] += sum(terms[k])
            varying[k] += max(terms[k]) > min(terms[k])
        if rec.family and rec.family != "none" and "+" not in rec.family:
            named = [named_family(p.reasoning) if p.reasoning else None for p in map(parse, texts)]
            fam_seen += len(named)
            fam_right += sum(x == rec.family for x in named)
            fam_groups += 1
            same_groups += len(set(named)) == 1
        for k in w:  # sum_j (w_k r_kj - mean)(R_j - mean R): the covariances add up to the variance
            mk = statistics.fmean(terms[k])
            share[k] += sum(w[k] * (terms[k][j] - mk) * (full[j] - mean) for j in range(len(texts)))
        for i, j in itertools.combinations(range(len(texts)), 2):
            pairs += 1
            reordered += (full[i] - full[j]) * (without[i] - without[j]) < 0 or (
                (full[i] == full[j]) != (without[i] == without[j]))
        ps = [parse(t) for t in texts]
        implied = judge.implied([p.reasoning if p.score is not None else None for p in ps])
        for p, s_r in zip(ps, implied):
            n += 1
            if p.score is None:
                continue
            parsed += 1
            errors.append(abs(p.score - rec.mos))
            if s_r is not None:  # as the evaluator: over answers whose reasoning the judge can read
                judged += 1
                consistent += abs(s_r - p.score) < within
                pairs_sr.append((p.score, s_r, rec.mos))
    return {
        "completions": n,
        "parse_rate": round(parsed / n, 4),
        "consistency_rate": round(consistent / judged, 4) if judged else None,
        "mean_abs_error": round(statistics.fmean(errors), 4) if errors else None,
        # how far sampled answers fall from the MOS decides how much of a Gaussian of width w they ever see
        "abs_error_quartiles": [round(q, 3) for q in statistics.quantiles(errors, n=4)] if len(errors) > 1 else None,
        "term_mean": {k: round(v / n, 4) for k, v in sums.items()},
        # the judge is a ridge regression, so its implied scores are narrower than the answers; and is the
        # reasoning consistent more often when the answer is right (Q-Insight's 0.35) than when it is wrong?
        "answer_sd": round(statistics.pstdev(x[0] for x in pairs_sr), 4) if pairs_sr else None,
        "implied_sd": round(statistics.pstdev(x[1] for x in pairs_sr), 4) if pairs_sr else None,
        "consistency_rate_right": _rate([x for x in pairs_sr if abs(x[0] - x[2]) < 0.35], within),
        "consistency_rate_wrong": _rate([x for x in pairs_sr if abs(x[0] - x[2]) >= 0.35], within),
        "implied_mae": round(statistics.fmean(abs(x[1] - x[2]) for x in pairs_sr), 4) if pairs_sr else None,
        "within_group_reward_sd": round((total_var / n) ** 0.5, 4),
        "variance_share": {k: round(v / total_var, 4) if total_var else None for k, v in share.items()},
        "pairs_reordered": round(reordered / pairs, 4),
        "groups_varying": {k: round(v / len(groups), 4) for k, v in varying.items()},
        "family_named_rate": round(fam_right / fam_seen, 4) if fam_seen else None,
        "family_same_in_group": round(same_groups / fam_groups, 4) if fam_groups else None,
    }


def _rate(rows: list[tuple], within: float) -> float | None:
    return round(sum(abs(a - i) < within for a, i, _ in rows) / len(rows), 4) if rows else None


if __name__ == "__main__":
    main()
