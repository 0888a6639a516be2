"""Why the default freezes the vision tower: a minimal training loop on an easy task.

The task: training images of qponder-synth with gaussian blur, white noise or JPEG, and a short reasoning that
names the distortion and its severity (built from the labels). At step 0 and every 40 steps: how many of 16 training images get
a greedy answer naming the right distortion, how many distinct answers, and the mean norm of the image
embeddings. Writes ``benchmarks/results/vision_probe.json``.

    .venv/bin/python benchmarks/vision_probe.py --synth runs/bench/synth --student runs/bench/student_choice/default/init
"""

import argparse
import json
import random
import time
from pathlib import Path

import torch
from PIL import Image

from qponder import prompts
from qponder.data.records import read_meta
from qponder.lexicon import FAMILY_NAMES, SEVERITY_WORDS
from qponder.models import load
from qponder.score import build_messages

TYPES = ("gaussian_blur", "white_noise", "jpeg")


def examples(synth: Path) -> list[dict]:
    rows = []
    for r in read_meta(synth / "metas" / "train.json"):
        if r.dis_type in TYPES:
            text = (f"The image shows {SEVERITY_WORDS[r.level][0]} {r.dis_type.replace('_', ' ')}, "
                    f"a kind of {FAMILY_NAMES[r.family]}.")
            rows.append({"path": str(synth / "images" / r.image), "type": r.dis_type,
                         "text": f"<think>{text}</think><answer>{r.mos:.2f}</answer>"})
    return rows


def run(student: Path, rows: list[dict], lr: float, steps: int, freeze: bool) -> list[dict]:
    torch.manual_seed(0)
    random.Random(0).shuffle(rows)
    m, p = load(str(student))
    ims = {r["path"]: Image.open(r["path"]).convert("RGB") for r in rows}
    prompt = prompts.load("student")
    if freeze:
        for q in m.model.vision_tower.parameters():
            q.requires_grad_(False)
    opt = torch.optim.AdamW([q for q in m.parameters() if q.requires_grad], lr=lr, weight_decay=0.0)

    def batch(rs):
        msgs = [build_messages(prompt, r["text"]) for r in rs]
        for mm, r in zip(msgs, rs):
            mm[0]["content"][0]["image"] = ims[r["path"]]
        out = p.apply_chat_template(msgs, tokenize=True, return_dict=True, return_tensors="pt",
                                    return_assistant_tokens_mask=True, processor_kwargs={"padding": True})
        labels = out["input_ids"].clone()
        labels[out.pop("assistant_masks") == 0] = -100
        out["labels"] = labels
        return out

    def probe():
        m.eval()
        sub = rows[:16]
        text = p.apply_chat_template(build_messages(prompt), add_generation_prompt=True, tokenize=False)
        inp = p(images=[ims[r["path"]] for r in sub], text=[text] * 16, padding=True, return_tensors="pt")
        with torch.no_grad():
            g = m.generate(**inp, max_new_tokens=12, do_sample=False, pad_token_id=p.tokenizer.pad_token_id)
            f = m.model.get_image_features(pixel_values=inp["pixel_values"]).pooler_output
        outs = p.tokenizer.batch_decode(g[:, inp["input_ids"].shape[1]:], skip_special_tokens=True)
        right = sum(r["type"].replace("_", " ") in o for o, r in zip(outs, sub))
        m.train()
        return {"distinct_answers": len(set(outs)), "right_type_of_16": right,
                "image_embedding_norm": round(f.norm(dim=-1).mean().item(), 2)}

    t0 = time.time()
    curve = [{"step": 0, "loss": None, **probe(), "seconds": 0}]
    m.train()
    for step in range(1, steps + 1):
        i = (step * 8) % (len(rows) - 8)
        loss = m(**batch(rows[i:i + 8])).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
        opt.step()
        opt.zero_grad()
        if step % 40 == 0:
            curve.append({"step": step, "loss": round(loss.item(), 3), **probe(), "seconds": round(time.time() - t0)})
            print(curve[-1], flush=True)
    return curve


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--synth", type=Path, required=True)
    ap.add_argument("--student", type=Path, required=True, help="an untrained `qponder model init` folder")
    ap.add_argument("--steps", type=int, default=120)
    a = ap.parse_args()
    rows = examples(a.synth)
    res = {"n_examples": len(rows), "lr": 1e-3, "runs": {}}
    for name, freeze in (("trainable_tower", False), ("frozen_tower", True)):
        print("==", name, flush=True)
        res["runs"][name] = run(a.student, list(rows), 1e-3, a.steps, freeze)
    Path("benchmarks/results/vision_probe.json").write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
