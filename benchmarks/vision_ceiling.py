"""How much of the score can the embedded student's vision tower see at all? A linear-probe ceiling.

For each DINOv2-S/14 block k (the default student keeps blocks 1-4), and for a few sets of blocks read side by side
(``SETS``), the patch tokens of each image (224x224, as the student's processor feeds them) are pooled into
[mean, std, CLS] (1,152 numbers) and a ridge regression to the MOS is fitted on qponder-synth `train` (alpha chosen
on the last 20 % of train, whose photos the first 80 % do not contain), then scored on the demo's splits. No
language model is involved: if a linear read-out of the frozen features cannot rank the test images, a student
built on them cannot either. ``--tower`` reads a student folder's own tower instead (e.g. one warmed up by
``qponder model warm-tower``), at the blocks it has.

    python benchmarks/vision_ceiling.py --synth runs/demo/synth
    python benchmarks/vision_ceiling.py --synth runs/demo/synth --tower runs/demo/tower   # a student's own tower
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

BLOCKS = (2, 4, 6, 8, 10, 12)
# several blocks side by side (their [mean, std, CLS] concatenated): can a student reading more than one block see more?
SETS = ((2, 4), (4, 6), (2, 4, 6), BLOCKS)


def features(model, synth: Path, split: str, stride: int, blocks=BLOCKS) -> tuple[dict[int, np.ndarray], np.ndarray]:
    import torch
    from PIL import Image

    from qponder.models.dinov2 import IMAGENET_MEAN, IMAGENET_STD

    recs = json.loads((synth / "metas" / f"{split}.json").read_text())[::stride]
    mean, std = np.array(IMAGENET_MEAN), np.array(IMAGENET_STD)
    out: dict[int, list] = {k: [] for k in blocks}
    for i in range(0, len(recs), 32):
        batch = [np.asarray(Image.open(synth / "images" / r["image"]).convert("RGB").resize((224, 224), Image.BICUBIC))
                 for r in recs[i:i + 32]]
        x = ((np.stack(batch) / 255.0 - mean) / std).transpose(0, 3, 1, 2)
        with torch.inference_mode():
            hs = model(pixel_values=torch.tensor(x, dtype=torch.float32), output_hidden_states=True).hidden_states
        for k in blocks:
            t = hs[k][:, 1:]
            out[k].append(torch.cat([t.mean(1), t.std(1), hs[k][:, 0]], 1).numpy())
    return {k: np.concatenate(v) for k, v in out.items()}, np.array([r["gt_score"] for r in recs])


def ridge(x: np.ndarray, y: np.ndarray, alpha: float) -> np.ndarray:
    xa = np.c_[x, np.ones(len(x))]
    reg = alpha * np.eye(xa.shape[1])
    reg[-1, -1] = 0.0  # no penalty on the intercept
    return np.linalg.solve(xa.T @ xa + reg, xa.T @ y)


def predict(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    return np.c_[x, np.ones(len(x))] @ w


def main() -> None:
    from scipy.stats import pearsonr, spearmanr

    from qponder.models.dinov2 import load_dinov2

    ap = argparse.ArgumentParser()
    ap.add_argument("--synth", type=Path, default=Path("runs/demo/synth"))
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/vision_ceiling.json"))
    ap.add_argument("--tower", type=Path, help="read this student folder's own tower (e.g. a warmed one) instead of "
                    "DINOv2's 12 blocks; only the blocks it has")
    a = ap.parse_args()
    t0 = time.time()
    if a.tower:
        from qponder.models import load
        from qponder.train.common import vision_modules

        model = vision_modules(load(str(a.tower))[0]).eval()
    else:
        model = load_dinov2(max(BLOCKS)).eval()
    blocks = tuple(k for k in BLOCKS if k <= model.config.num_hidden_layers)
    sets = tuple(b for b in SETS if set(b) <= set(blocks))
    xtr, ytr = features(model, a.synth, "train", 1, blocks)
    tests = {s: features(model, a.synth, s, 4 if s == "test" else 1, blocks)
             for s in ("test", "test_xtype", "test_compound")}
    res = {"synth": str(a.synth), "tower": str(a.tower) if a.tower else "DINOv2-S/14 (12 blocks)",
           "features": "mean, std and CLS of block-k tokens at 224 px", "blocks": {}}
    for blocks_set in sets:
        key = "+".join(map(str, blocks_set))
        xtr[key] = np.concatenate([xtr[k] for k in blocks_set], 1)
        for x, _ in tests.values():
            x[key] = np.concatenate([x[k] for k in blocks_set], 1)
    cut = int(0.8 * len(ytr))
    for k in list(blocks) + ["+".join(map(str, b)) for b in sets]:
        mu, sd = xtr[k].mean(0), xtr[k].std(0) + 1e-6
        z = (xtr[k] - mu) / sd
        val = {al: spearmanr(predict(z[cut:], ridge(z[:cut], ytr[:cut], al)), ytr[cut:]).statistic
               for al in np.logspace(0, 4, 9)}
        alpha = float(max(val, key=val.get))
        w = ridge(z, ytr, alpha)
        row = {"alpha": alpha}
        for s, (x, y) in tests.items():
            p = predict((x[k] - mu) / sd, w)
            row[s] = {"n": len(y), "srcc": round(float(spearmanr(p, y).statistic), 4),
                      "plcc": round(float(pearsonr(p, y).statistic), 4)}
        res["blocks"][k] = row
        print(k, row, flush=True)
    res["seconds"] = round(time.time() - t0, 1)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
