"""Cold-start data: run a teacher over labelled images, filter by MOS consistency, append to a JSONL.

One JSON object per image, written once the image is final (kept, or out of attempts), flushed at once:
killed at any point, a rerun reads the file, drops a torn last line, and continues with the images not in it,
so no finished sample is lost and none is duplicated.

Filter (the paper keeps "high-quality" traces; the rule is ours): a trace is kept when it parses under the
answer contract, has reasoning, and its score is within ``tolerance`` of the MOS. Rejected images may be
asked again up to ``retries`` times (useful with sampling teachers).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from qponder.data.records import Record, check_images, load_records
from qponder.errors import QPonderError
from qponder.models.answer import parse


@dataclass
class DistillRecipe:
    teacher: str = "attribute"  # attribute | openai
    data: str = ""  # meta JSON or CSV with MOS
    images: str | None = None  # image root (default: next to the data)
    out: str = "runs/distill/distilled.jsonl"
    tolerance: float = 0.5  # keep a trace when |teacher score - MOS| <= tolerance (MOS on [1, 5])
    retries: int = 0  # extra attempts for a rejected image
    use_mos_hint: bool = False  # tell the teacher the MOS (documented option; off: an honest teacher)
    # attribute teacher: tell it the record's distortion family label, which its reasoning then leads with (its
    # score stays its own); for data with labels (qponder-synth, KADID). See AttributeTeacher.
    use_family_hint: bool = False
    # also drop a trace whose named distortion family (qponder.eval.reasoning.named_family) is not the record's
    # label, where the data has one ("none": the trace must name no family): the MOS filter for the diagnosis
    check_family: bool = False
    limit: int | None = None
    skip_missing: bool = False
    calibrate: bool = True  # attribute teacher: fit its score mapping on this data's MOS first
    calibrate_max: int = 800  # images used for that fit
    # attribute teacher: the dominant problem first, then the attribute survey (measured: docs/results.md)
    diagnosis_first: bool = True
    # openai teacher
    base_url: str = "http://localhost:8000/v1"
    model: str = ""
    api_key_env: str = "OPENAI_API_KEY"
    temperature: float = 0.7
    max_tokens: int = 512
    concurrency: int = 4
    timeout: float = 120.0
    seed: int = 0


def make_teacher(recipe: DistillRecipe, records: list[Record], root: Path):
    if recipe.teacher == "attribute":
        from qponder.teachers.attribute import AttributeTeacher

        teacher = AttributeTeacher(use_mos_hint=recipe.use_mos_hint, seed=recipe.seed,
                                   diagnosis_first=recipe.diagnosis_first, family_hint=recipe.use_family_hint)
        if recipe.calibrate:
            from qponder.eval.evaluate import open_image

            sample = records[:: max(1, len(records) // recipe.calibrate_max)][: recipe.calibrate_max]
            teacher.fit([open_image(r.path(root)) for r in sample], [r.mos for r in sample])
        return teacher
    if recipe.teacher == "openai":
        from qponder.teachers.openai import OpenAITeacher

        if not recipe.model:
            raise QPonderError("distill --teacher openai needs --model (the served model's name)")
        if recipe.use_family_hint:
            raise QPonderError("use_family_hint is an option of the attribute teacher; the openai teacher's prompt "
                               "has no slot for a family label")
        return OpenAITeacher(base_url=recipe.base_url, model=recipe.model, api_key_env=recipe.api_key_env,
                             temperature=recipe.temperature, max_tokens=recipe.max_tokens, timeout=recipe.timeout,
                             concurrency=recipe.concurrency, use_mos_hint=recipe.use_mos_hint)
    raise QPonderError(f"unknown teacher {recipe.teacher!r}: 'attribute' or 'openai'")


def verdict(text: str | None, mos: float, tolerance: float, error: str | None = None,
            family: str | None = None) -> tuple[bool, str, float | None]:
    """(kept, why, teacher score) for one trace; ``family``: the label its reasoning must name (None: no check)."""
    if error:
        return False, f"teacher error: {error}", None
    p = parse(text)
    if not p.ok:
        return False, f"unparseable: {p.reason}", None
    if not p.reasoning:
        return False, "no reasoning", p.score
    if abs(p.score - mos) > tolerance:
        return False, "score disagrees with MOS", p.score
    if family:
        from qponder.eval.reasoning import named_family

        named = named_family(p.reasoning)
        if (named is not None) if family == "none" else (named not in family.split("+")):
            return False, "family disagrees with label", p.score
    return True, "kept", p.score


def read_done(path: Path) -> dict[str, dict]:
    """Finished rows by image; a torn last line (a kill mid-write) is cut off the file."""
    if not path.exists():
        return {}
    raw = path.read_bytes()
    lines = raw.split(b"\n")
    done, good_bytes = {}, 0
    for i, line in enumerate(lines):
        if not line.strip():
            good_bytes += len(line) + 1
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            if i >= len(lines) - 2:  # the last (unterminated) line: cut it and redo that image
                break
            raise QPonderError(f"{path}: line {i + 1} is not JSON; fix or delete the file") from None
        done[row["image"]] = row
        good_bytes += len(line) + 1
    if good_bytes < len(raw):
        with path.open("r+b") as fh:
            fh.truncate(min(good_bytes, len(raw)))
    return done


def _row(rec: Record, root: Path, teacher: str, text, error, attempts: int, tolerance: float, history: list,
         check_family: bool = False, use_family_hint: bool = False) -> dict:
    kept, why, score = verdict(text, rec.mos, tolerance, error, rec.family if check_family else None)
    return {"image": rec.image, "path": str(rec.path(root).resolve()), "mos": rec.mos, "dis_type": rec.dis_type,
            "family": rec.family, "level": rec.level, "split": rec.split, "teacher": teacher, "text": text,
            "score": score, "kept": kept, "verdict": why, "attempts": attempts, "rejected": history,
            "check_family": check_family, "tolerance": tolerance, "use_family_hint": use_family_hint}


def distill(recipe: DistillRecipe, progress: bool = True) -> dict:
    """Run the teacher over the data (resumably) and return the summary it also writes beside the JSONL."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn, TimeRemainingColumn

    from qponder.eval.evaluate import default_image_root, open_image

    data = Path(recipe.data)
    records = load_records(data)
    root = Path(recipe.images) if recipe.images else default_image_root(data, records)
    records = check_images(records, root, skip_missing=recipe.skip_missing, source=str(data))
    if recipe.limit:
        records = records[: recipe.limit]
    out = Path(recipe.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = read_done(out)
    # a resumed file keeps its rows' verdicts: mixing two filters would go unnoticed. Rows written before a
    # setting was recorded carry no value for it (check_family and use_family_hint were off then; tolerance cannot
    # be known).
    for key, before in (("check_family", False), ("tolerance", None), ("use_family_hint", False)):
        want = getattr(recipe, key)
        other = next((r for r in done.values() if r.get(key, before) not in (None, want)), None)
        if other is not None:
            raise QPonderError(f"{out}: its rows were filtered with {key}={other.get(key, before)}, this run asks "
                               f"for {want}; delete the file or use another --out")
    todo = [r for r in records if r.image not in done]
    t0 = time.time()
    teacher = make_teacher(recipe, records, root) if todo else None
    cols = ("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TimeRemainingColumn())
    with out.open("a") as fh, Progress(*cols, disable=not progress) as bar:
        task = bar.add_task(f"distill ({recipe.teacher})", total=len(records), completed=len(records) - len(todo))
        history: dict[str, list] = {r.image: [] for r in todo}
        pending = list(todo)
        for attempt in range(1, recipe.retries + 2):
            if not pending:
                break
            again = []
            for rec, text, error in _ask(teacher, pending, root, recipe.use_mos_hint, open_image,
                                         recipe.use_family_hint):
                row = _row(rec, root, teacher.name, text, error, attempt, recipe.tolerance, history[rec.image],
                           recipe.check_family, recipe.use_family_hint)
                if not row["kept"] and attempt <= recipe.retries:
                    history[rec.image].append({"text": text, "verdict": row["verdict"]})
                    again.append(rec)
                    continue
                fh.write(json.dumps(row) + "\n")
                fh.flush()
                bar.advance(task)
            pending = again
    rows = list(read_done(out).values())
    wanted = {r.image for r in records}
    rows = [r for r in rows if r["image"] in wanted]
    summary = {"teacher": recipe.teacher, "data": str(data), "out": str(out), "images": len(rows),
               "kept": sum(r["kept"] for r in rows),
               "kept_share": round(sum(r["kept"] for r in rows) / len(rows), 4) if rows else None,
               "dropped": dict(Counter(r["verdict"].split(":")[0] for r in rows if not r["kept"])),
               "tolerance": recipe.tolerance, "check_family": recipe.check_family,
               "use_family_hint": recipe.use_family_hint,
               "seconds_this_run": round(time.time() - t0, 1)}
    out.with_suffix(".summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def _ask(teacher, records: list[Record], root: Path, hint: bool, open_image, family_hint: bool = False):
    """Yield (record, text, error) for each record; concurrent when the teacher can batch requests."""
    mos = (lambda r: r.mos) if hint else (lambda r: None)
    if hasattr(teacher, "describe_many"):
        by_key = {r.image: r for r in records}
        unreadable = []

        def items():  # opened lazily, as request slots free up; a bad file becomes that image's error row
            for r in records:
                try:
                    yield r.image, open_image(r.path(root)), mos(r)
                except QPonderError as e:
                    unreadable.append((r, str(e)))

        for key, text, error in teacher.describe_many(items()):
            yield by_key[key], text, error
        for r, error in unreadable:
            yield r, None, error
        return
    for r in records:
        try:
            hints = {"family": r.family} if family_hint else {}
            yield r, teacher.describe(open_image(r.path(root)), mos(r), **hints), None
        except QPonderError as e:
            yield r, None, str(e)
