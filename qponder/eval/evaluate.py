"""One evaluator for every model: predictor x records -> predictions.jsonl + summary.json.

Resumable: predictions are appended one line per image and flushed; a rerun reads what is there (a torn
last line from a killed run is dropped) and scores only the rest.

Sharded under ``accelerate launch`` / torchrun (WORLD_SIZE > 1): rank R scores records R, R+W, ... into its own
``predictions.rank{R}.jsonl`` (one writer per file, so the resume logic above holds per shard), and the main rank
merges the shards into the same ``predictions.jsonl`` and ``summary.json`` a single process writes.

A prediction that failed (e.g. an unparseable VLM answer) stays in the metrics as an uninformative guess:
the median of the successful scores. Dropping failures would let a model that answers rarely look good;
``parse_fail_rate`` says how often it happened.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import time
from pathlib import Path
from typing import Iterable

from PIL import Image, UnidentifiedImageError

from qponder.data.records import Record, check_images, load_records
from qponder.errors import QPonderError
from qponder.eval import metrics as M
from qponder.eval.predictor import Prediction, Predictor
from qponder.eval.reasoning import consistency_metrics, reasoning_metrics, with_reasoning

MIN_PER_GROUP = 5  # a per-family SRCC over fewer images is noise


def make_predictor(model: str, think: bool = True, samples: int = 1, seed: int = 0, batch_size: int = 8,
                   max_new_tokens: int = 256, trust_remote_code: bool = False, bf16: bool | None = None) -> Predictor:
    """``--model``: a classical baseline by name (brisque, niqe), or a VLM folder / preset / hub id."""
    from qponder.eval.baselines import BASELINES, create_baseline

    if model.lower() in BASELINES:
        return create_baseline(model.lower())
    from qponder.models.hf import looks_like_hub_id

    if Path(model).is_dir() or model.startswith("preset:") or looks_like_hub_id(model):
        from qponder.score import Scorer, VLMPredictor

        # the models of one evaluation share a frozen tower: each image's features are computed once for all
        scorer = Scorer.from_pretrained(model, trust_remote_code=trust_remote_code, batch_size=batch_size,
                                        max_new_tokens=max_new_tokens, tower_cache=True, bf16=bf16)
        return VLMPredictor(scorer, think=think, samples=samples, seed=seed)
    raise QPonderError(f"unknown model {model!r}: expected one of {', '.join(sorted(BASELINES))}, "
                       "a model folder, preset:NAME or a hub id (org/name)")


def default_image_root(data: Path, records: list[Record]) -> Path:
    """Where a meta's relative image paths point when --images is not given.

    qponder-synth and DeQA-Score lay data out as ``ROOT/{images,metas}``; plain CSVs sit beside their images.
    """
    data = Path(data).resolve()
    candidates = [data.parent.parent / "images", data.parent / "images", data.parent]
    for c in candidates:
        if records[0].path(c).is_file():
            return c
    return data.parent


def open_image(path: Path) -> Image.Image:
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except FileNotFoundError:
        raise QPonderError(f"{path}: image not found") from None
    except (UnidentifiedImageError, OSError) as e:
        raise QPonderError(f"{path}: not a readable image ({e.__class__.__name__})") from None


def read_predictions(path: Path) -> list[dict]:
    if not path.exists():
        return []
    rows = []
    lines = path.read_text().splitlines()
    for i, line in enumerate(lines):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if i == len(lines) - 1:
                break  # torn write of a killed run: that image is simply scored again
            raise QPonderError(f"{path}: line {i + 1} is not JSON; delete the file to start over") from None
    return rows


def _rewrite_clean(path: Path, rows: list[dict]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    tmp.replace(path)


def _row(rec: Record, pred: Prediction, latency: float) -> dict:
    return {
        "image": rec.image, "mos": rec.mos, "score": pred.score, "ok": pred.ok, "reason": pred.reason,
        "raw": pred.raw, "text": pred.text, "tokens": pred.tokens, "expected": pred.expected,
        "latency": round(latency, 4),
        "dis_type": rec.dis_type, "family": rec.family, "level": rec.level,
    }


def predict_all(predictor: Predictor, records: list[Record], root: Path, out: Path, batch_size: int = 8,
                progress: bool = True, name: str = "predictions.jsonl") -> tuple[list[dict], int, float]:
    """Score every record not yet in ``out/name``.

    Returns all rows (old and new, in record order), how many were scored now, and the seconds spent scoring.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn, TimeRemainingColumn

    path = out / name
    rows = read_predictions(path)
    wanted = {r.image for r in records}
    rows = [r for r in rows if r["image"] in wanted]
    _rewrite_clean(path, rows)
    done = {r["image"] for r in rows}
    todo = [r for r in records if r.image not in done]
    spent = 0.0
    cols = ("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), TimeRemainingColumn())
    with path.open("a") as fh, Progress(*cols, disable=not progress) as bar:
        task = bar.add_task(f"eval {predictor.name}", total=len(records), completed=len(done))
        for i in range(0, len(todo), batch_size):
            batch = todo[i:i + batch_size]
            images = [open_image(r.path(root)) for r in batch]
            t = time.perf_counter()
            preds = predictor.predict(images)
            dt = time.perf_counter() - t
            spent += dt
            if len(preds) != len(batch):
                raise RuntimeError(f"{predictor.name} returned {len(preds)} predictions for {len(batch)} images")
            for rec, p in zip(batch, preds):
                row = _row(rec, p, dt / len(batch))
                fh.write(json.dumps(row) + "\n")
                rows.append(row)
            fh.flush()
            bar.advance(task, len(batch))
    order = {r.image: i for i, r in enumerate(records)}
    rows.sort(key=lambda r: order[r["image"]])
    return rows, len(todo), spent


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))  # set by accelerate launch / torchrun


def _state():
    """The launcher's process group: gloo on CPU (accelerate needs cpu=True to see it there), nccl on GPU."""
    import torch
    from accelerate import PartialState

    state = PartialState(cpu=not torch.cuda.is_available())
    if state.num_processes != world_size():
        raise QPonderError(f"WORLD_SIZE is {world_size()} but accelerate joined {state.num_processes} process(es); "
                           "run sharded eval through accelerate launch or torchrun")
    return state


def predict_sharded(predictor: Predictor, records: list[Record], root: Path, out: Path, batch_size: int = 8,
                    progress: bool = True) -> tuple[list[dict] | None, int, float]:
    """``predict_all`` over this rank's strided shard; on the main rank, all rows merged in record order.

    Other ranks get None for the rows. The figures are the whole job's: images scored now on every rank, and
    the slowest rank's scoring seconds (the ranks run side by side).
    """
    from accelerate.utils import gather_object

    state = _state()
    rank, world = state.process_index, state.num_processes
    _, n_new, spent = predict_all(predictor, records[rank::world], root, out, batch_size=batch_size,
                                  progress=progress and state.is_main_process, name=f"predictions.rank{rank}.jsonl")
    counts = gather_object([(n_new, spent)])  # collective: every rank must reach it
    if not state.is_main_process:
        return None, n_new, spent
    merged: dict[str, dict] = {}
    for r in range(world):
        for row in read_predictions(out / f"predictions.rank{r}.jsonl"):
            merged.setdefault(row["image"], row)
    order = {r.image: i for i, r in enumerate(records)}
    rows = sorted((row for image, row in merged.items() if image in order), key=lambda row: order[row["image"]])
    if len(rows) != len(order):
        raise QPonderError(f"{out}: the {world} shards hold {len(rows)} of {len(order)} predictions")
    _rewrite_clean(out / "predictions.jsonl", rows)
    return rows, sum(n for n, _ in counts), max(t for _, t in counts)


def _metrics(rows: list[dict], on_mos_scale: bool) -> dict:
    ok = [r["score"] for r in rows if r["ok"] and r["score"] is not None and math.isfinite(r["score"])]
    fill = statistics.median(ok) if ok else 0.0
    pred = [r["score"] if r["ok"] and r["score"] is not None and math.isfinite(r["score"]) else fill for r in rows]
    mos = [r["mos"] for r in rows]
    s = M.summarize(pred, mos)
    if not on_mos_scale:
        s["rmse"] = None  # the metric's own scale: only rank and fitted figures mean anything
    s["n_failed"] = len(rows) - len(ok)
    s["parse_fail_rate"] = round((len(rows) - len(ok)) / len(rows), 4) if rows else None
    return s


def summarize_rows(rows: list[dict], on_mos_scale: bool, judge=None) -> dict:
    summary = _metrics(rows, on_mos_scale)
    tokens = [r["tokens"] for r in rows if r.get("tokens") is not None]
    summary["mean_tokens"] = round(statistics.fmean(tokens), 1) if tokens else None
    if any(r.get("expected") is not None for r in rows):  # VLMs: the answer's digits read as a distribution
        exp = _metrics([{**r, "score": r.get("expected"), "ok": r["ok"] and r.get("expected") is not None}
                        for r in rows], on_mos_scale)
        summary.update({f"{k}_expected": exp[k] for k in ("srcc", "plcc", "krcc")})
        summary["expected_missing_rate"] = exp["parse_fail_rate"]
    families: dict[str, list[dict]] = {}
    for r in rows:
        if r.get("family"):
            families.setdefault(r["family"], []).append(r)
    reasoned = with_reasoning(rows)
    if any(r["reasoning"] for r in reasoned):
        summary.update(reasoning_metrics(reasoned))
        summary.update(consistency_metrics(reasoned, judge))
    summary["per_family"] = {
        f: {k: v for k, v in _metrics(rs, on_mos_scale).items() if k in ("n", "srcc", "plcc", "parse_fail_rate")}
        for f, rs in sorted(families.items()) if len(rs) >= MIN_PER_GROUP
    }
    return summary


def evaluate(predictor: Predictor, data: str | Path, out: str | Path, images: str | Path | None = None,
             skip_missing: bool = False, batch_size: int = 8, limit: int | None = None,
             progress: bool = True, records: Iterable[Record] | None = None, judge=None) -> dict:
    """Evaluate ``predictor`` on a meta/CSV (``data``), writing ``out/predictions.jsonl`` and ``out/summary.json``."""
    data = Path(data)
    records = list(records) if records is not None else load_records(data)
    root = Path(images) if images else default_image_root(data, records)
    if images and not root.is_dir():
        raise QPonderError(f"{root}: image folder not found")
    records = check_images(records, root, skip_missing=skip_missing, source=str(data))
    if limit:
        records = records[:limit]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    sharded = world_size() > 1
    rows, n_new, spent = (predict_sharded if sharded else predict_all)(predictor, records, root, out,
                                                                       batch_size=batch_size, progress=progress)
    if rows is None:  # a non-main rank: the main one writes the summary
        _state().wait_for_everyone()
        return json.loads((out / "summary.json").read_text())
    summary = {"model": predictor.name, "data": str(data), "images": str(root),
               **summarize_rows(rows, predictor.on_mos_scale, judge)}
    # speed counts only this run's scoring, so a resumed run does not report an inflated figure;
    # a rerun that had nothing left to score keeps the figure of the run that did the work
    speed = round(n_new / spent, 3) if n_new and spent > 0 else None
    previous = out / "summary.json"
    if speed is None and previous.exists():
        speed = json.loads(previous.read_text()).get("images_per_second")
    summary["images_per_second"] = speed
    summary["wall_seconds"] = round(time.time() - t0, 2)
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    if sharded:
        _state().wait_for_everyone()
    return summary
