"""Warm up the student's vision tower on quality labels before the language model learns to read it.

The embedded default's tower is DINOv2 cut after block 4, trained on ImageNet-style objectives, not on image quality.
A linear read-out of what it hands the language model ranks unseen photos at 0.685 SRCC, and the SFT students stop
just under that (docs/results.md, stops 3 and 29); trained end to end on MOS and family labels, DINOv2 blocks rank
them far better (stop 13). Here the tower's own blocks are trained for a short while on the training split with two
small heads, MOS regression and distortion-family classification, reading the mean and spread of the patch tokens
the projector will see; the heads are then dropped and the tower goes back to being frozen in SFT and GRPO.

A tower trained at the random LM's learning rate loses its features (docs/student.md), hence the tower's own small
lr here. Only towers that return ``hidden_states`` (LLaVA-style, e.g. the embedded AyaVision/DINOv2 student) are
supported; a Qwen-VL ``visual`` tower is refused with a clear error.

Measured on the embedded default (docs/results.md, stop 34): 350 steps (about 5 minutes on a 2-core CPU) lift a ridge
read-out of block 4 on unseen photos from 0.685 to 0.779, yet the students trained on the warmed tower rank them only
0.005 (no-CoT) to 0.018 (CI) better and the cross-domain splits worse, so the demo does not run it.

    qponder model warm-tower --config recipes/tower.yaml --model runs/demo/student --out runs/demo/tower
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from qponder.errors import QPonderError


@dataclass
class TowerRecipe:
    model: str = "runs/demo/student"    # the student folder whose tower is warmed up
    data: str = "runs/demo/synth/metas/train.json"   # labelled images (mos; family where known)
    out: str = "runs/demo/tower"        # the same student with the warmed tower (an HF folder)
    images: str | None = None           # image root for relative paths (default: next to the data)
    max_steps: int = 350                # 2.4 epochs of qponder-synth's train split in 16-image batches
    batch_size: int = 16
    learning_rate: float = 2.0e-5       # the tower's
    head_learning_rate: float = 1.0e-3
    family_weight: float = 1.0          # cross-entropy weight beside the MOS regression
    weight_decay: float = 0.01
    bf16: bool | None = None            # None: where this device runs bf16 faster (qponder.models.precision)
    seed: int = 0
    logging_steps: int = 10


def _tower_and_layer(model):
    from qponder.train.common import vision_modules

    tower = vision_modules(model)
    layer = getattr(model.config, "vision_feature_layer", None)
    if not hasattr(model.model if hasattr(model, "model") else model, "vision_tower") or not isinstance(layer, int):
        raise QPonderError(f"{type(model).__name__}: tower warm-up needs a LLaVA-style vision_tower read at one "
                           "vision_feature_layer (e.g. the embedded AyaVision student)")
    return tower, layer


def patch_summary(hidden):
    """Mean and standard deviation of the patch tokens (the CLS token, which the projector drops, left out)."""
    import torch

    t = hidden[:, 1:]
    return torch.cat([t.mean(1), t.std(1)], 1)


def _labels(recipe: TowerRecipe):
    """(image paths, standardised MOS, family index or -100, family names) of the labelled images."""
    import numpy as np
    import torch

    from qponder.data.records import check_images, load_records
    from qponder.eval.evaluate import default_image_root

    recs = load_records(recipe.data)
    root = Path(recipe.images) if recipe.images else default_image_root(Path(recipe.data), recs)
    recs = check_images(recs, root, source=recipe.data)
    mos = np.array([r.mos for r in recs], dtype=np.float32)
    families = sorted({r.family for r in recs if r.family})
    fam = torch.tensor([families.index(r.family) if r.family else -100 for r in recs])
    return [r.path(root) for r in recs], torch.tensor((mos - mos.mean()) / max(mos.std(), 1e-6)), fam, families


def _pixels(processor, paths: list[Path]):
    import torch

    from qponder.eval.evaluate import open_image

    # loaded per batch, not all up front: a real dataset at a real tower's resolution would not fit in memory
    return torch.cat([processor.image_processor(images=[open_image(p)], return_tensors="pt")["pixel_values"]
                      for p in paths])


def warm_up(recipe: TowerRecipe, progress: bool = True) -> Path:
    """Train the tower of ``recipe.model`` on ``recipe.data`` and save the whole student to ``recipe.out``."""
    import torch

    from qponder.models import load, save
    from qponder.models.precision import autocast, use_bf16

    out = Path(recipe.out)
    if (out / "tower.json").exists():
        return out  # finished earlier: a rerun of the pipeline skips it
    if recipe.max_steps < 1 or recipe.batch_size < 1:
        raise QPonderError(f"tower recipe: max_steps and batch_size must be >= 1 (got {recipe.max_steps}, "
                           f"{recipe.batch_size})")
    torch.manual_seed(recipe.seed)
    model, processor = load(recipe.model)
    tower, layer = _tower_and_layer(model)
    paths, mos, fam, families = _labels(recipe)
    width = tower.config.hidden_size
    head = torch.nn.Linear(2 * width, 1 + len(families))
    for p in model.parameters():
        p.requires_grad_(False)
    for p in tower.parameters():
        p.requires_grad_(True)
    opt = torch.optim.AdamW([{"params": tower.parameters(), "lr": recipe.learning_rate},
                             {"params": head.parameters(), "lr": recipe.head_learning_rate}],
                            weight_decay=recipe.weight_decay)
    bf16 = use_bf16(recipe.bf16)
    gen = torch.Generator().manual_seed(recipe.seed)
    order = torch.randperm(len(mos), generator=gen)
    log, t0, pos = [], time.time(), 0
    tower.train()
    steps = range(recipe.max_steps)
    if progress:
        from rich.progress import track

        steps = track(steps, description="tower warm-up")
    for step in steps:
        if pos + recipe.batch_size > len(order):
            order, pos = torch.randperm(len(mos), generator=gen), 0
        idx = order[pos:pos + recipe.batch_size]
        pos += recipe.batch_size
        with autocast(model, bf16):
            pix = _pixels(processor, [paths[i] for i in idx.tolist()])
            hidden = tower(pixel_values=pix, output_hidden_states=True).hidden_states[layer]
            pred = head(patch_summary(hidden).float())
        mse = torch.nn.functional.mse_loss(pred[:, 0].float(), mos[idx])
        labelled = fam[idx] >= 0
        ce = (torch.nn.functional.cross_entropy(pred[labelled, 1:].float(), fam[idx][labelled])
              if labelled.any() else torch.zeros(()))
        loss = mse + recipe.family_weight * ce
        opt.zero_grad()
        loss.backward()
        opt.step()
        if (step + 1) % recipe.logging_steps == 0 or step + 1 == recipe.max_steps:
            log.append({"step": step + 1, "mse": round(mse.item(), 4), "family_ce": round(ce.item(), 4),
                        "seconds": round(time.time() - t0, 1)})
    tower.eval()
    for p in tower.parameters():
        p.requires_grad_(False)
    save(model, processor, out)
    card = {"recipe": asdict(recipe), "bf16": bf16, "images": len(mos), "families": families,
            "epochs": round(recipe.max_steps * recipe.batch_size / len(mos), 2),
            "seconds": round(time.time() - t0, 1), "log": log}
    (out / "tower.json").write_text(json.dumps(card, indent=1))  # written last: marks the stage finished
    return out
