"""How often do GRPO's sampled rollouts break the answer contract, and why, under a sampling setting?

GRPO samples its rollouts (temperature 1.0 in the demo) while evaluation decodes greedily. A rollout that does
not parse earns 0 from every reward but ``format``, so where many do, the group's reward spread (and with it the
advantage GRPO learns from) is mostly "parses or not", a lesson the greedy model has already learnt. This samples
a model the way TRL's GRPOTrainer does (``do_sample``, the given temperature / top-p / top-k) on training images
and counts parse failures by reason, and the share of groups that mix parsed and failed rollouts.

    python benchmarks/rollout_parse.py --model runs/demo/ci --data runs/demo/synth/metas/train.json \\
        --setting T1=1.0,1.0,0 --setting T1_p09=1.0,0.9,0 --setting T07=0.7,1.0,0
"""

from __future__ import annotations

import argparse
import collections
import json
import time
from pathlib import Path


def main() -> None:
    import torch
    from PIL import Image

    from qponder import prompts
    from qponder.data.records import check_images, load_records
    from qponder.eval.evaluate import default_image_root
    from qponder.models.answer import is_strict, parse
    from qponder.score import Scorer, build_messages

    ap = argparse.ArgumentParser()
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--setting", action="append", required=True, help="NAME=temperature,top_p,top_k")
    ap.add_argument("--images", type=int, default=48)
    ap.add_argument("--group", type=int, default=4, help="rollouts per image, as GRPO's num_generations")
    ap.add_argument("--max-new-tokens", type=int, default=192)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/rollout_parse.json"))
    a = ap.parse_args()

    recs = load_records(a.data)
    root = default_image_root(a.data, recs)
    recs = check_images(recs, root, source=str(a.data))
    recs = recs[:: max(1, len(recs) // a.images)][: a.images]
    scorer = Scorer.from_pretrained(a.model)
    tok = scorer.processor.tokenizer
    text = scorer.processor.apply_chat_template(build_messages(prompts.load("student")), add_generation_prompt=True,
                                                tokenize=False)
    res = json.loads(a.out.read_text()) if a.out.exists() else {}
    res.update({"model": str(a.model), "data": str(a.data), "images": len(recs), "group": a.group})
    res.setdefault("settings", {})
    for spec in a.setting:
        name, vals = spec.split("=", 1)
        temperature, top_p, top_k = (float(v) for v in vals.split(","))
        t0 = time.time()
        reasons: collections.Counter = collections.Counter()
        strict = parsed = total = 0
        groups_mixed = groups_all_fail = 0
        distinct = []
        for i in range(0, len(recs), 4):  # 4 images x group rollouts per generate call, as one GRPO step
            batch = recs[i:i + 4]
            images = [Image.open(r.path(root)).convert("RGB") for r in batch for _ in range(a.group)]
            inputs = scorer.processor(images=images, text=[text] * len(images), padding=True, return_tensors="pt")
            torch.manual_seed(a.seed + i)
            with torch.inference_mode():
                out = scorer.model.generate(**inputs, max_new_tokens=a.max_new_tokens, do_sample=True,
                                            temperature=temperature, top_p=top_p, top_k=int(top_k),
                                            pad_token_id=tok.pad_token_id)
            texts = tok.batch_decode(out[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
            for g in range(len(batch)):
                group = texts[g * a.group:(g + 1) * a.group]
                ps = [parse(t) for t in group]
                ok = [p.score is not None for p in ps]
                total += len(group)
                parsed += sum(ok)
                strict += sum(is_strict(t) for t in group)
                reasons.update(p.reason.split(":")[0] for p in ps if p.score is None)
                groups_mixed += 0 < sum(ok) < len(ok)
                groups_all_fail += not any(ok)
                distinct.append(len({p.score for p in ps if p.score is not None}))
        n_groups = len(distinct)
        res["settings"][name] = {
            "temperature": temperature, "top_p": top_p, "top_k": int(top_k), "completions": total,
            "parse_rate": round(parsed / total, 4), "strict_rate": round(strict / total, 4),
            "failure_reasons": dict(reasons.most_common()),
            "groups_with_parse_and_fail": round(groups_mixed / n_groups, 4),
            "groups_all_fail": round(groups_all_fail / n_groups, 4),
            "mean_distinct_scores_per_group": round(sum(distinct) / n_groups, 3),
            "seconds": round(time.time() - t0, 1)}
        print(name, res["settings"][name])
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
