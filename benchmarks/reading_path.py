"""Where does the student lose the distortion family? Linear probes along the image's path into the LM.

The demo's CoT student names the right family for about 38 % of distorted `test` images, and a student trained
on the labelled family alone (perception turns only) for 43 % after three epochs (docs/results.md, stop 10),
while a linear probe on the tower's pooled features reads 68 % (``diagnosis_ceiling.py``). This probes each
step of the path with the same ridge classifier (family label, alpha chosen on the last 20 % of `train`) and a
ridge regression to the MOS (SRCC):

- ``tower``: block-4 patch tokens pooled into [mean, std] plus the CLS token (the ceiling of stop 6);
- ``tower_patches``: the same without CLS, which the student's projector never receives;
- ``projector_input:NAME``: the projector's input in a model folder (2x2 pixel shuffle, then its LayerNorm),
  pooled into [mean, std];
- ``projector_output:NAME``: the 64 image tokens the projector hands the LM, pooled the same way.

Where a probe's accuracy drops from one step to the next, that step hides the family from a linear read-out; if
the projector's tokens still carry it, the loss is in the language model's reading of them.

    python benchmarks/reading_path.py --run runs/demo_stop8 --model student=runs/demo_stop8/student \\
        --model ci=runs/demo_stop8/ci
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import time
from pathlib import Path

import numpy as np

SPLITS = {"train": 1, "test": 4, "test_xtype": 1, "test_compound": 1}


@functools.cache
def _bench(name: str):
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def tower_features(model, synth: Path, split: str, stride: int) -> dict[str, np.ndarray]:
    import torch
    from PIL import Image

    from qponder.models.dinov2 import IMAGENET_MEAN, IMAGENET_STD

    recs = json.loads((synth / "metas" / f"{split}.json").read_text())[::stride]
    mean, std = np.array(IMAGENET_MEAN), np.array(IMAGENET_STD)
    full, patches = [], []
    for i in range(0, len(recs), 32):
        batch = [np.asarray(Image.open(synth / "images" / r["image"]).convert("RGB").resize((224, 224), Image.BICUBIC))
                 for r in recs[i:i + 32]]
        x = ((np.stack(batch) / 255.0 - mean) / std).transpose(0, 3, 1, 2)
        with torch.inference_mode():
            h = model(pixel_values=torch.tensor(x, dtype=torch.float32), output_hidden_states=True).hidden_states[4]
        t = h[:, 1:]
        patches.append(torch.cat([t.mean(1), t.std(1)], 1).numpy())
        full.append(torch.cat([t.mean(1), t.std(1), h[:, 0]], 1).numpy())
    return {"tower": np.concatenate(full), "tower_patches": np.concatenate(patches)}


def projector_features(model, proc, synth: Path, split: str, stride: int) -> dict[str, np.ndarray]:
    """Pooled [mean, std] of the projector's input (after its pixel shuffle and LayerNorm) and of its output."""
    import torch
    from PIL import Image

    from qponder.train.common import projector_modules

    seen = {}
    hook = projector_modules(model).layernorm.register_forward_hook(lambda m, i, o: seen.__setitem__("input", o))
    recs = json.loads((synth / "metas" / f"{split}.json").read_text())[::stride]
    out: dict[str, list] = {"input": [], "output": []}
    for i in range(0, len(recs), 32):
        imgs = [Image.open(synth / "images" / r["image"]).convert("RGB") for r in recs[i:i + 32]]
        pv = proc.image_processor(images=imgs, return_tensors="pt")["pixel_values"]
        with torch.inference_mode():
            seen["output"] = model.model.get_image_features(pixel_values=pv).pooler_output
        for k, v in out.items():
            t = seen[k].reshape(len(imgs), -1, seen[k].shape[-1])  # batch x 64 tokens x width
            v.append(torch.cat([t.mean(1), t.std(1)], 1).numpy())
    hook.remove()
    return {k: np.concatenate(v) for k, v in out.items()}


def probe(feats: dict[str, np.ndarray], meta: dict[str, list[dict]]) -> dict:
    from scipy.stats import spearmanr

    vc, dc = _bench("vision_ceiling"), _bench("diagnosis_ceiling")
    xtr = feats["train"]
    mu, sd = xtr.mean(0), xtr.std(0) + 1e-6
    z = (xtr - mu) / sd
    cut = int(0.8 * len(z))
    fam = [r["family"] for r in meta["train"]]
    classes = sorted(set(fam))
    onehot = np.array([[y == c for c in classes] for y in fam], dtype=float)
    mos = np.array([r["gt_score"] for r in meta["train"]])
    out = {}
    for task, y in (("family", onehot), ("mos", mos)):
        def score(pred, truth):
            if task == "family":
                return float(np.mean(pred.argmax(1) == truth.argmax(1)))
            return float(spearmanr(pred, truth)[0])

        val = {al: score(vc.predict(z[cut:], vc.ridge(z[:cut], y[:cut], al)), y[cut:]) for al in np.logspace(-1, 4, 11)}
        alpha = float(max(val, key=val.get))
        w = vc.ridge(z, y, alpha)
        row = {"alpha": alpha}
        for s in ("test", "test_xtype", "test_compound"):
            pred = vc.predict((feats[s] - mu) / sd, w)
            if task == "family":
                row[s] = dc.family_accuracy([classes[i] for i in pred.argmax(1)], [r["family"] for r in meta[s]])
            else:
                row[s] = round(float(spearmanr(pred, [r["gt_score"] for r in meta[s]])[0]), 4)
        out[task] = row
    return out


def main() -> None:
    from qponder.models import load
    from qponder.models.dinov2 import load_dinov2

    ap = argparse.ArgumentParser()
    ap.add_argument("--run", type=Path, default=Path("runs/demo"))
    ap.add_argument("--model", action="append", default=[], help="NAME=FOLDER of a student-family model")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/reading_path.json"))
    ap.add_argument("--no-tower", action="store_true", help="probe the model folders only")
    a = ap.parse_args()
    synth, t0 = a.run / "synth", time.time()
    meta = {s: json.loads((synth / "metas" / f"{s}.json").read_text())[::k] for s, k in SPLITS.items()}
    sources: dict[str, dict[str, np.ndarray]] = {} if a.no_tower else {"tower": {}, "tower_patches": {}}
    tower = None if a.no_tower else load_dinov2(4).eval()
    for s, k in SPLITS.items():
        for name, x in ({} if tower is None else tower_features(tower, synth, s, k)).items():
            sources[name][s] = x
    for spec in a.model:
        name, folder = spec.split("=", 1)
        model, proc = load(folder)
        feats = {s: projector_features(model.eval(), proc, synth, s, k) for s, k in SPLITS.items()}
        for part in ("input", "output"):
            sources[f"projector_{part}:{name}"] = {s: f[part] for s, f in feats.items()}
    res = json.loads(a.out.read_text()) if a.out.exists() else {}  # probes of earlier calls stay
    res.update({"run": str(a.run), "n_train": len(meta["train"])})
    res.setdefault("probes", {})
    for name, feats in sources.items():
        res["probes"][name] = probe(feats, meta)
        print(name, res["probes"][name], flush=True)
    res["seconds"] = round(time.time() - t0, 1)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
