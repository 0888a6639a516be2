"""qponder-synth: a KADID-style benchmark built offline from real photos.

Pipeline: reference photos (``photos``) -> split by photo -> a deterministic plan of (reference, distortion,
level) per split -> distorted PNGs (``distortions``) labelled with KADID-10k's human cell means
(``kadid_labels``) -> DeQA-style metas per split + ``labels.csv``.

Splits (no photo in two splits):
- ``train`` / ``val`` / ``test``: references plus the trained distortion types;
- ``test_xtype``: test photos, distortion types never seen in training (cross-domain by type);
- ``test_compound``: test photos, two distortions in sequence (cross-domain by mixture).

Resumable: the plan is written first; each image is written atomically and skipped if already there; metas
and the ``done`` marker come last. The plan is a pure function of the config, so a rerun with the same
config continues, and one with another config is refused rather than mixing two benchmarks.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from qponder.data import distortions as D
from qponder.data import kadid_labels as K
from qponder.data.records import Record, write_csv, write_meta
from qponder.errors import QPonderError

SPLITS = ("train", "val", "test", "test_xtype", "test_compound")

# One held-out type per family that keeps a sibling in training, so the model can transfer by family.
HELDOUT_TYPES = ("lens_blur", "color_diffusion", "jpeg2000", "multiplicative_noise", "pixelate")
COMPOUNDS = (("gaussian_blur", "jpeg"), ("white_noise", "jpeg"), ("motion_blur", "white_noise"), ("darken", "white_noise"))


@dataclass
class SynthConfig:
    out: str
    quick: bool = False
    seed: int = 0
    width: int = 320
    height: int = 240
    n_refs: int | None = None  # None: all eligible photos (quick: 60)
    per_ref: int | None = None  # distorted images per reference in train/val/test (full 20, quick 6)
    per_ref_xtype: int = 3
    per_ref_compound: int = 3
    split_fracs: tuple[float, float, float] = (0.6, 0.1, 0.3)
    heldout_types: tuple[str, ...] = HELDOUT_TYPES
    compounds: tuple[tuple[str, str], ...] = COMPOUNDS
    workers: int = field(default_factory=lambda: min(2, os.cpu_count() or 1))

    def resolved(self) -> "SynthConfig":
        c = SynthConfig(**asdict(self))
        if c.n_refs is None and c.quick:
            c.n_refs = 60
        if c.per_ref is None:
            c.per_ref = 6 if c.quick else 20
        c.split_fracs = tuple(c.split_fracs)
        c.heldout_types = tuple(c.heldout_types)
        c.compounds = tuple(tuple(x) for x in c.compounds)
        for name in c.heldout_types + tuple(n for pair in c.compounds for n in pair):
            D.get(name)  # unknown names fail before any work is done
        return c

    def plan_key(self) -> dict:
        """Everything that decides which images exist and how they look (not where or how fast)."""
        d = asdict(self)
        d.pop("out")
        d.pop("workers")
        return json.loads(json.dumps(d))


@dataclass
class Item:
    """One image to produce: ``steps`` is [] for the reference, else [(distortion, level), ...]."""

    image: str
    ref: str
    split: str
    steps: list


def _split_refs(names: list[str], fracs, rng: random.Random) -> dict[str, list[str]]:
    names = sorted(names)
    rng.shuffle(names)
    n = len(names)
    n_train = round(n * fracs[0])
    n_val = max(1, round(n * fracs[1]))
    return {"train": names[:n_train], "val": names[n_train:n_train + n_val], "test": names[n_train + n_val:]}


def _assign(refs: list[str], cells: list[tuple[str, int]], k: int, rng: random.Random) -> dict[str, list]:
    """Spread cells evenly over references: each cell is used about equally often overall."""
    pool: list = []
    need = len(refs) * k
    while len(pool) < need:
        batch = list(cells)
        rng.shuffle(batch)
        pool += batch
    return {ref: pool[i * k:(i + 1) * k] for i, ref in enumerate(refs)}


def _name(ref: str, steps) -> str:
    if not steps:
        return f"{ref}.png"
    return f"{ref}__" + "+".join(f"{n}-{lv}" for n, lv in steps) + ".png"


def make_plan(cfg: SynthConfig, photo_names: list[str]) -> list[Item]:
    rng = random.Random(cfg.seed)
    names = sorted(photo_names)
    if cfg.n_refs is not None:
        rng.shuffle(names)
        names = sorted(names[:cfg.n_refs])
    if len(names) < 10:
        raise QPonderError(f"only {len(names)} reference photos available; qponder-synth needs at least 10")
    split = _split_refs(names, cfg.split_fracs, rng)
    trained = [d.name for d in D.DISTORTIONS.values() if d.name not in cfg.heldout_types]
    cells = [(t, lv) for t in trained for lv in range(1, 6)]
    items: list[Item] = []
    for s in ("train", "val", "test"):
        for ref, chosen in _assign(split[s], cells, cfg.per_ref, rng).items():
            items.append(Item(_name(ref, []), ref, s, []))
            items += [Item(_name(ref, [c]), ref, s, [list(c)]) for c in chosen]
    xcells = [(t, lv) for t in cfg.heldout_types for lv in range(1, 6)]
    for ref, chosen in _assign(split["test"], xcells, cfg.per_ref_xtype, rng).items():
        items += [Item(_name(ref, [c]), ref, "test_xtype", [list(c)]) for c in chosen]
    combos = [((a, la), (b, lb)) for a, b in cfg.compounds for la in range(1, 6) for lb in range(1, 6)]
    for ref, chosen in _assign(split["test"], combos, cfg.per_ref_compound, rng).items():
        items += [Item(_name(ref, list(c)), ref, "test_compound", [list(x) for x in c]) for c in chosen]
    # the same cell can be drawn twice for one reference; one file serves both, so keep one record
    seen, unique = set(), []
    for it in items:
        if (it.split, it.image) not in seen:
            seen.add((it.split, it.image))
            unique.append(it)
    return unique


def label(item: Item) -> Record:
    """The human label of a planned image (see ``kadid_labels`` for the rules)."""
    if not item.steps:
        return Record(image=item.image, mos=K.reference_mos(), dataset="qponder-synth", split=item.split,
                      dis_type="reference", family="none", level=0, ref=item.ref, mos_cell=K.reference_mos())
    parts = [(D.get(n), lv) for n, lv in item.steps]
    cells = [K.cell_mos(d.kadid_id, lv) for d, lv in parts]
    if len(parts) == 1:
        (d, lv), cell = parts[0], cells[0]
        return Record(image=item.image, mos=cell.mos, std=cell.std, dataset="qponder-synth", split=item.split,
                      dis_type=d.name, family=d.family, level=lv, ref=item.ref, mos_cell=cell.mos)
    mos = K.compound_mos([c.mos for c in cells])
    return Record(image=item.image, mos=mos, dataset="qponder-synth", split=item.split,
                  dis_type="+".join(d.name for d, _ in parts), family="+".join(d.family for d, _ in parts),
                  level=max(lv for _, lv in parts), ref=item.ref, mos_cell=mos,
                  extra={"levels": ",".join(str(lv) for _, lv in parts)})


def _seed_for(seed: int, image: str) -> int:
    # a per-image seed makes every file independent of worker count and build order
    return int.from_bytes(hashlib.sha256(f"{seed}:{image}".encode()).digest()[:8], "little")


def _render_ref(args) -> list[str]:
    """Worker: load and prepare one reference, write every planned image of it that is not there yet."""
    photo, items, out, size, seed = args
    from qponder.data import photos as P

    todo = [it for it in items if not (out / "images" / it["image"]).exists()]
    if not todo:
        return []
    base = np.asarray(P.prepare(photo.load(), size).convert("RGB"))
    written = []
    for it in todo:
        rng = np.random.default_rng(_seed_for(seed, it["image"]))
        img = D.apply_chain([tuple(s) for s in it["steps"]], base, rng) if it["steps"] else base
        path = out / "images" / it["image"]
        tmp = path.with_name(path.name + ".tmp")
        Image.fromarray(img).save(tmp, format="PNG", compress_level=1)
        tmp.replace(path)
        written.append(it["image"])
    return written


def build(cfg: SynthConfig, progress: bool = True) -> dict:
    """Build (or finish building) qponder-synth under ``cfg.out``. Returns the summary it also writes."""
    from qponder.data import photos as P

    cfg = cfg.resolved()
    out = Path(cfg.out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    plan_path = out / "plan.json"
    if plan_path.exists():
        saved = json.loads(plan_path.read_text())
        if saved["config"] != cfg.plan_key():
            raise QPonderError(f"{out} holds a qponder-synth build with another config (see {plan_path}); "
                               "use a new --out folder or delete that one")
        items = [Item(**d) for d in saved["items"]]
        photos = {p.name: p for p in P.list_photos() if p.name in {it.ref for it in items}}
    else:
        size = (cfg.width, cfg.height)
        photos = {p.name: p for p in P.list_photos() if P.eligible(p.load(), size)}
        items = make_plan(cfg, list(photos))
        tmp = plan_path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"config": cfg.plan_key(), "items": [asdict(i) for i in items]}))
        tmp.replace(plan_path)
    missing_refs = {it.ref for it in items} - set(photos)
    if missing_refs:
        raise QPonderError(f"reference photos missing for this plan: {sorted(missing_refs)[:5]}")

    by_ref: dict[str, list[dict]] = {}
    for it in items:
        by_ref.setdefault(it.ref, []).append(asdict(it))
    jobs = [(photos[r], its, out, (cfg.width, cfg.height), cfg.seed) for r, its in sorted(by_ref.items())]
    n_done_before = sum((out / "images" / it.image).exists() for it in items)
    _run_jobs(jobs, len(items), n_done_before, cfg.workers, progress)

    records = [label(it) for it in items]
    for s in SPLITS:
        recs = [r for r in records if r.split == s]
        if not recs:
            raise QPonderError(f"split {s!r} came out empty; use more reference photos (--n-refs)")
        write_meta(recs, out / "metas" / f"{s}.json")
    write_csv(records, out / "labels.csv", columns=["image", "mos", "mos_cell", "std", "dis_type", "level",
                                                    "levels", "family", "ref", "split", "dataset"])
    summary = {
        "name": "qponder-synth",
        "config": cfg.plan_key(),
        "images": len(records),
        "references": len(by_ref),
        "splits": {s: sum(r.split == s for r in records) for s in SPLITS},
        "reused_images": n_done_before,
        "seconds": round(time.time() - t0, 1),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    (out / "done").write_text("ok\n")
    return summary


def _run_jobs(jobs, total: int, done: int, workers: int, progress: bool) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn, TimeRemainingColumn

    cols = ("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*cols, disable=not progress, transient=False) as bar:
        task = bar.add_task("qponder-synth images", total=total, completed=done)
        if workers <= 1:
            for j in jobs:
                bar.advance(task, len(_render_ref(j)))
            return
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for written in pool.map(_render_ref, jobs):
                bar.advance(task, len(written))
