"""Run report: one Markdown page, a summary.json and a few plots from a demo run folder.

Reads only files the pipeline already wrote (``eval/<MODEL>/<SPLIT>/summary.json`` and ``predictions.jsonl``,
``stages.json``, ``qponder/trainer_state.json``), so a report can be rebuilt any time without a model loaded.
``write_report`` covers one run; ``compare_runs`` puts several runs' SRCC side by side.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from qponder.errors import QPonderError

MODELS = {"brisque": "BRISQUE", "niqe": "NIQE", "teacher": "teacher (attribute)", "sft_no_reasoning": "no-CoT SFT",
          "ci": "Q-Ponder-CI", "qponder": "Q-Ponder"}
SPLITS = ("test", "test_xtype", "test_compound")
KEYS = ("n", "srcc", "plcc", "krcc", "rmse", "plcc_logistic", "parse_fail_rate", "family_acc", "severity_acc",
        "clean_rate", "consistency_rate", "mean_tokens", "images_per_second", "srcc_expected", "plcc_expected",
        "krcc_expected")
REASONING = (("family_acc", "family acc."), ("severity_acc", "severity acc."), ("consistency_rate", "consistency"),
             ("clean_rate", "clean rate"), ("mean_tokens", "mean tokens"))
N_EXAMPLES = 5


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise QPonderError(f"report: cannot read {path}: {e}") from None


def _read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # an interrupted (resumable) eval can leave a half-written last line
    return rows


def _order(names, known) -> list[str]:
    """Known names in their fixed order first, then any others alphabetically."""
    names = set(names)
    return [n for n in known if n in names] + sorted(names - set(known))


def _fmt(v, digits: int = 3) -> str:
    if v is None:
        return "–"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def _name(model: str) -> str:
    return MODELS.get(model, model)


def _check_run(run_dir: Path) -> Path:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise QPonderError(f"report: run folder {run_dir} does not exist")
    if not (run_dir / "eval").is_dir():
        raise QPonderError(f"report: {run_dir} has no eval/ folder; run the eval stage first")
    return run_dir


def collect(run_dir: Path) -> dict:
    """The run's numbers as a JSON-ready dict (the content of summary.json, bars and plots aside)."""
    run_dir = _check_run(run_dir)
    models: dict = {}
    for mdir in sorted(p for p in (run_dir / "eval").iterdir() if p.is_dir()):
        for sdir in sorted(p for p in mdir.iterdir() if (p / "summary.json").is_file()):
            s = _read_json(sdir / "summary.json")
            if not isinstance(s, dict):
                raise QPonderError(f"report: {sdir / 'summary.json'} is not a JSON object")
            models.setdefault(mdir.name, {})[sdir.name] = {k: s.get(k) for k in KEYS} | {
                "per_family": {f: {k: m.get(k) for k in ("n", "srcc", "plcc")}
                               for f, m in (s.get("per_family") or {}).items()}}
    models = {m: {s: models[m][s] for s in _order(models[m], SPLITS)} for m in _order(models, MODELS)}
    stages = _read_json(run_dir / "stages.json") if (run_dir / "stages.json").is_file() else {}
    stages = {k: {"seconds": v.get("seconds")} for k, v in stages.items() if isinstance(v, dict)}
    return {"run": str(run_dir), "student": _student(run_dir), "models": models, "stages": stages,
            "total_seconds": round(sum(v["seconds"] or 0 for v in stages.values()), 1),
            "model_dirs": {m: str(run_dir / m) for m in ("ci", "qponder") if (run_dir / m).is_dir()}}


def _student(run_dir: Path) -> str | None:
    """One line on the student the run trained (its card from ``qponder model init``); None if it has none."""
    path = run_dir / "student" / "qponder_student.json"
    card = _read_json(path) if path.is_file() else None
    if not isinstance(card, dict) or not isinstance(card.get("spec"), dict):
        return None
    spec = card["spec"]
    lm = ("SmolLM2-135M" if spec.get("lm") == "smollm2" else
          f"random Llama {spec.get('lm_layers')} layers x {spec.get('lm_hidden')} wide, {spec.get('lm_heads')} heads, "
          f"MLP {spec.get('lm_intermediate')}")
    return (f"preset `{card.get('preset')}`: {lm}; {card.get('image_tokens')} image tokens; "
            f"{(card.get('parameters') or 0) / 1e6:.1f} M parameters")


def _get(models: dict, model: str, split: str, key: str):
    return models.get(model, {}).get(split, {}).get(key)


def compute_bars(models: dict, stages: dict | None = None, budget: str | None = None) -> list[dict]:
    """The quality bars the recipe must clear; passed is None when an input was not measured.

    ``budget``: why the run's training budget is not the demo's (``demo_budget``); the time bar is the demo's, so
    such a run (``--full``) reports its minutes without a verdict."""
    def bar(name, value, target, op, na=None):
        if value is None or target is None or na:
            unset = {"name": name, "value": value, "target": target, "op": op, "gap": None, "passed": None}
            return {**unset, "not_applicable": na} if na else unset
        gap = target - value if op in ("<", "<=") else value - target
        passed = {">=": gap >= 0, ">": gap > 0, "<": gap > 0, "<=": gap >= 0}[op]
        return {"name": name, "value": value, "target": target, "op": op, "gap": gap, "passed": bool(passed)}

    g = lambda m, s="test", k="srcc": _get(models, m, s, k)  # noqa: E731
    base = [v for v in (g("brisque"), g("niqe")) if v is not None]
    q = g("qponder")
    bars = [bar("Q-Ponder test SRCC", q, 0.90, ">="),
            bar("Q-Ponder test SRCC minus best of BRISQUE/NIQE", None if q is None or not base else q - max(base),
                0.30, ">=")]
    for s in SPLITS:
        q_s, ci_s = g("qponder", s), g("ci", s)
        bars.append(bar(f"Q-Ponder minus Q-Ponder-CI SRCC on {s}", None if q_s is None or ci_s is None
                        else q_s - ci_s, 0.03, ">="))
    bars.append(bar("no-CoT SFT test SRCC below Q-Ponder-CI's", g("sft_no_reasoning"), g("ci"), "<"))
    qf = g("qponder", k="family_acc")
    bars.append(bar("Q-Ponder test family accuracy", qf, 0.90, ">="))
    bars.append(bar("Q-Ponder test family accuracy above the teacher's", qf, g("teacher", k="family_acc"), ">"))
    bars.append(bar("demo minutes, every stage (the bar is for the 2-core CPU)", demo_minutes(stages), 20.0, "<=",
                    na=budget))
    return bars


BUDGET = ("sft_no_reasoning.max_steps", "sft.max_steps", "grpo.max_steps", "grpo.per_device_train_batch_size",
          "grpo.num_generations", "test_stride")


def demo_budget(run_dir: Path) -> str | None:
    """None when the run trained and evaluated with the demo's budget (or says nothing of it: a run without
    ``demo.yaml``), else which settings differ, e.g. ``sft.max_steps 900 (the demo: 600)`` for ``--full``."""
    import yaml

    from qponder.demo import DemoRecipe

    path = Path(run_dir) / "demo.yaml"
    if not path.is_file():
        return None
    try:
        ran = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise QPonderError(f"report: cannot read {path}: {e}") from None
    if not isinstance(ran, dict):
        raise QPonderError(f"report: {path} is not a mapping of demo recipe keys")
    demo = vars(DemoRecipe())

    def get(d: dict, key: str):
        for k in key.split("."):
            d = d.get(k) if isinstance(d, dict) else None
        return d

    diff = [f"{k} {get(ran, k)} (the demo: {get(demo, k)})" for k in BUDGET
            if get(ran, k) is not None and get(ran, k) != get(demo, k)]
    return "; ".join(diff) or None


def demo_minutes(stages: dict | None) -> float | None:
    """The demo's time: its stages' seconds summed (a resumed run counts each stage once), None if one is missing."""
    from qponder.demo import STAGES

    stages = stages or {}
    secs = [stages.get(s, {}).get("seconds") for s in STAGES if s != "report"]  # the report times nothing it trains
    return None if any(v is None for v in secs) else round(sum(secs) / 60, 1)


def grpo_log(model_dir: Path) -> list[dict]:
    """A GRPO run's logged steps (those with a reward) from its folder or checkpoint; [] where it has no log."""
    path = Path(model_dir) / "trainer_state.json"
    if not path.is_file():
        return []
    log = _read_json(path)
    log = log.get("log_history", []) if isinstance(log, dict) else log  # HF's own file nests the list
    return [e for e in log if isinstance(e, dict) and "step" in e and "reward" in e]


def _predictions(run_dir: Path, model: str, split: str = "test") -> list[dict]:
    return _read_jsonl(run_dir / "eval" / model / split / "predictions.jsonl")


def family_naming(run_dir: Path, models: dict, split: str = "test") -> dict:
    """model -> labelled family -> {acc, n}: how often the reasoning names each distortion family on ``split``,
    read from the predictions (so a run evaluated before this table existed gets it too)."""
    from qponder.eval.reasoning import reasoning_metrics, with_reasoning

    out = {}
    for m in models:
        rows = with_reasoning(_predictions(run_dir, m, split))
        by = reasoning_metrics(rows)["family_by_family"] if any(r["reasoning"] for r in rows) else {}
        if by:
            out[m] = by
    return out


def make_plots(run_dir: Path, summary: dict, out: Path) -> list[str]:
    """scatter.png, family_srcc.png and grpo_curves.png (each only when it has data); paths relative to out."""
    from matplotlib.figure import Figure  # no pyplot: no global backend state, Agg canvas by default

    plots = out / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    made = []
    models = summary["models"]
    tested = [m for m in models if "test" in models[m]]
    pts = {m: [(r["mos"], r["score"]) for r in _predictions(run_dir, m)
               if r.get("ok", True) and r.get("score") is not None and r.get("mos") is not None] for m in tested}
    pts = {m: p for m, p in pts.items() if p}
    if pts:
        cols = min(3, len(pts))
        rows = -(-len(pts) // cols)
        fig = Figure(figsize=(3.3 * cols, 3.1 * rows), layout="constrained")
        axes = fig.subplots(rows, cols, squeeze=False).ravel()
        for ax in axes[len(pts):]:
            ax.set_axis_off()
        for ax, (m, p) in zip(axes, pts.items()):
            ax.scatter([a for a, _ in p], [b for _, b in p], s=6, alpha=0.6)
            ax.set(title=f"{_name(m)}: SRCC {_fmt(_get(models, m, 'test', 'srcc'))}", xlabel="MOS", ylabel="predicted")
        fig.savefig(plots / "scatter.png", dpi=90)
        made.append("plots/scatter.png")

    fams = sorted({f for m in tested for f, v in models[m]["test"]["per_family"].items() if v.get("srcc") is not None})
    if fams:
        fig = Figure(figsize=(max(6, 1.1 * len(fams)), 3.5), layout="constrained")
        ax, w = fig.subplots(), 0.8 / len(tested)
        for i, m in enumerate(tested):
            fam = models[m]["test"]["per_family"]
            ax.bar([j + i * w for j in range(len(fams))], [(fam.get(f) or {}).get("srcc") or 0 for f in fams],
                   width=w, label=_name(m))
        ax.set_xticks([j + 0.4 - w / 2 for j in range(len(fams))], fams, rotation=30, ha="right")
        ax.set(ylabel="SRCC (test)", title="SRCC per distortion family")
        ax.axhline(0, color="k", lw=0.5)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1, 1))
        fig.savefig(plots / "family_srcc.png", dpi=90)
        made.append("plots/family_srcc.png")

    log = grpo_log(run_dir / "qponder")
    if log:
        terms = sorted({k for e in log for k in e if re.fullmatch(r"rewards/.+/mean", k)})
        fig = Figure(figsize=(9, 3.2), layout="constrained")
        ax_r, ax_k = fig.subplots(1, 2)
        for key, label in [("reward", "total")] + [(t, t.split("/")[1]) for t in terms]:
            xs = [(e["step"], e[key]) for e in log if e.get(key) is not None]
            ax_r.plot([a for a, _ in xs], [b for _, b in xs], label=label, lw=2 if key == "reward" else 1)
        ax_r.set(xlabel="step", ylabel="reward", title="GRPO reward")
        ax_r.legend(fontsize=7)
        kl = [(e["step"], e["kl"]) for e in log if e.get("kl") is not None]
        ax_k.plot([a for a, _ in kl], [b for _, b in kl], color="C3")
        ax_k.set(xlabel="step", ylabel="KL", title="KL to the reference")
        fig.savefig(plots / "grpo_curves.png", dpi=90)
        made.append("plots/grpo_curves.png")
    return made


def _reasoning(text: str | None) -> str:
    if not text:
        return ""
    m = re.search(r"<think>(.*?)</think>", text, re.S)
    body = m.group(1) if m else re.sub(r"<answer>.*?</answer>", "", text, flags=re.S)
    body = " ".join(re.sub(r"</?\w+>", " ", body).split())
    return body if len(body) <= 700 else body[:700] + " …"


def _image_roots(run_dir: Path, model: str) -> list[Path]:
    roots = [run_dir / "synth" / "images"]
    s = run_dir / "eval" / model / "test" / "summary.json"
    if s.is_file() and isinstance(images := _read_json(s).get("images"), str):
        roots.append(Path(images))
    return roots


def pick_examples(rows: list[dict], n: int = N_EXAMPLES) -> list[dict]:
    """n rows with reasoning, deterministic, one per family in turn so the examples show varied distortions."""
    groups: dict = {}
    for r in sorted((r for r in rows if r.get("text")), key=lambda r: r["image"]):
        groups.setdefault(r.get("family") or "none", []).append(r)
    picked, rnd = [], 0
    while len(picked) < n and any(len(g) > rnd for g in groups.values()):
        for fam in sorted(groups):
            g = groups[fam]
            if rnd < len(g) and len(picked) < n:
                picked.append(g[(len(g) // 2 + rnd) % len(g)])  # mid-list, not always the first reference
        rnd += 1
    return picked


def _examples(run_dir: Path, out: Path) -> list[str]:
    """Markdown for the example section: thumbnail, MOS, then each reasoning model's score and reasoning."""
    from PIL import Image

    main = next((m for m in ("qponder", "ci") if _predictions(run_dir, m)), None)
    if main is None:
        return ["No test predictions with reasoning from Q-Ponder or Q-Ponder-CI."]
    teacher = {r["image"]: r for r in _predictions(run_dir, "teacher")}
    (out / "examples").mkdir(parents=True, exist_ok=True)
    lines = []
    for i, r in enumerate(pick_examples(_predictions(run_dir, main)), 1):
        lines.append(f"### {i}. {r.get('family') or 'none'}, level {r.get('level', '–')}: `{r['image']}`\n")
        src = next((p / r["image"] for p in _image_roots(run_dir, main) if (p / r["image"]).is_file()), None)
        if src is not None:
            safe = re.sub(r"[^\w.-]", "_", Path(r["image"]).stem)  # image names come from the data set
            thumb = f"examples/{i}_{safe}.png"
            with Image.open(src) as im:
                im = im.convert("RGB")
                im.thumbnail((192, 192))
                im.save(out / thumb)
            lines.append(f"![{r['image']}]({thumb})\n")
        lines += [f"MOS **{_fmt(r.get('mos'), 2)}**\n", "| model | score | reasoning |", "|---|---:|---|"]
        for m, row in ((main, r), ("teacher", teacher.get(r["image"]))):
            if row is not None:
                lines.append(f"| {_name(m)} | {_fmt(row.get('score'), 2)} | "
                             f"{_reasoning(row.get('text')).replace('|', '/') or '–'} |")
        lines.append("")
    return lines


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" + "---:|" * (len(header) - 1),
            *("| " + " | ".join(r) + " |" for r in rows), ""]


def render(summary: dict, examples: list[str]) -> str:
    models = summary["models"]
    splits = _order({s for m in models.values() for s in m}, SPLITS)
    md = ["# Q-Ponder run report\n", f"Run folder: `{summary['run']}`\n"]
    if summary.get("student"):
        md += [f"Student: {summary['student']}\n"]
    md += ["## Agreement with MOS\n"]
    md += _table(["model"] + [f"{s} {k}" for s in splits for k in ("SRCC", "PLCC", "KRCC")],
                 [[_name(m)] + [_fmt(_get(models, m, s, k)) for s in splits for k in ("srcc", "plcc", "krcc")]
                  for m in models])
    vlms = [m for m in models if any(_get(models, m, s, "srcc_expected") is not None for s in splits)]
    if vlms:
        md += ["## Agreement with MOS, expected score\n",
               "The same greedy completions, with the answer's digits read as a distribution (the expectation over "
               "each digit's probabilities, `qponder.models.expected`) instead of the digits written.\n"]
        md += _table(["model"] + [f"{s} {k}" for s in splits for k in ("SRCC", "PLCC", "KRCC")],
                     [[_name(m)] + [_fmt(_get(models, m, s, f"{k}_expected")) for s in splits
                                    for k in ("srcc", "plcc", "krcc")] for m in vlms])
    rsn = [(m, s) for m in models for s in splits if any(_get(models, m, s, k) is not None for k, _ in REASONING)]
    if rsn:
        md += ["## Reasoning\n"]
        md += _table(["model", "split"] + [h for _, h in REASONING],
                     [[_name(m), s] + [_fmt(_get(models, m, s, k), 1 if k == "mean_tokens" else 3)
                                       for k, _ in REASONING] for m, s in rsn])
    naming = summary.get("family_naming") or {}
    if naming:
        fams = sorted({f for by in naming.values() for f in by}, key=lambda f: ("+" in f, f))
        n = {f: next(by[f]["n"] for by in naming.values() if f in by) for f in fams}
        md += ["## Which distortion families the reasoning names (test)\n",
               "Share of the distorted `test` images of each labelled family whose reasoning names that family "
               "most (`qponder.eval.reasoning.named_family`; a compound counts either family). Images per family "
               "in brackets.\n"]
        md += _table(["model"] + [f"{f} ({n[f]})" for f in fams],
                     [[_name(m)] + [_fmt(by[f]["acc"]) if f in by else "–" for f in fams] for m, by in naming.items()])
    md += ["## Parse failures\n"]
    md += _table(["model"] + splits, [[_name(m)] + [_fmt(_get(models, m, s, "parse_fail_rate")) for s in splits]
                                      for m in models])
    if summary["stages"]:
        md += ["## Time per stage\n"]
        rows = [[k, _fmt(v["seconds"], 1), _fmt(None if v["seconds"] is None else v["seconds"] / 60, 1)]
                for k, v in summary["stages"].items()]
        total = summary["total_seconds"]
        md += _table(["stage", "seconds", "minutes"], rows + [["**total**", f"{total:.1f}", f"{total / 60:.1f}"]])
    if summary.get("grpo"):
        g = summary["grpo"]
        md += [f"GRPO: {g['steps']} logged steps, reward {_fmt(g['reward_first'])} → {_fmt(g['reward_last'])}, "
               f"final KL {_fmt(g['kl_last'], 4)}.\n"]
    if summary["plots"]:
        md += ["## Plots\n"] + [f"![{Path(p).stem}]({p})\n" for p in summary["plots"]]
    md += ["## Examples (test split)\n"] + examples
    md += ["## Quality bars\n"]
    md += _table(["bar", "value", "target", "gap", "result"],
                 [[b["name"], _fmt(b["value"]), f"{b['op']} {_fmt(b['target'])}", _fmt(b["gap"]),
                   f"n/a: not the demo's budget ({b['not_applicable']})" if b.get("not_applicable") else
                   "not measured" if b["passed"] is None else "PASS" if b["passed"] else "MISSED"]
                  for b in summary["bars"]])
    if summary.get("diagnostics") and any(b["passed"] is False for b in summary["bars"]):
        md += _diagnostics_md(summary["diagnostics"])
    return "\n".join(md)


def diagnostics(run_dir: Path, models: dict, log: list[dict]) -> dict:
    """The numbers that explain a missed bar: how spread and how discrete each model's answers are on test
    (a student that repeats a few scores cannot rank), and whether GRPO's groups gave it any signal."""
    out: dict = {"answers": {}}
    for m in models:
        scores = [r["score"] for r in _predictions(run_dir, m) if r.get("ok") and r.get("score") is not None]
        if len(scores) > 1 and all(1 <= x <= 5 for x in scores):  # answers on the MOS scale only
            mean = sum(scores) / len(scores)
            std = (sum((x - mean) ** 2 for x in scores) / len(scores)) ** 0.5
            out["answers"][m] = {"mean": round(mean, 3), "std": round(std, 3), "distinct": len(set(scores))}
    if log:
        rstd = [e["reward_std"] for e in log if e.get("reward_std") is not None]
        zero = [e["frac_reward_zero_std"] for e in log if e.get("frac_reward_zero_std") is not None]
        out["grpo"] = {"reward_std_mean": round(sum(rstd) / len(rstd), 4) if rstd else None,
                       "frac_groups_zero_std": round(sum(zero) / len(zero), 4) if zero else None}
    return out


def _diagnostics_md(d: dict) -> list[str]:
    md = ["## Diagnostics\n", "Spread of the predicted scores on `test` (MOS spread is about 1.06 on qponder-synth); "
          "few distinct values or a small spread means the model answers with a handful of memorised scores.\n"]
    md += _table(["model", "mean score", "std", "distinct scores"],
                 [[_name(m), _fmt(v["mean"], 2), _fmt(v["std"], 2), str(v["distinct"])] for m, v in d["answers"].items()])
    if d.get("grpo"):
        g = d["grpo"]
        md += [f"GRPO signal: mean reward std inside a group {_fmt(g['reward_std_mean'])}, share of groups with no "
               f"reward variance (no gradient) {_fmt(g['frac_groups_zero_std'])}.\n",
               "Why the bars of the embedded default are missed, and what was tried: `docs/results.md`.\n"]
    return md


def write_report(run_dir, out=None) -> dict:
    """Write summary.json, report.md, plots/ and examples/ into out (default: the run folder); return the summary."""
    run_dir = _check_run(Path(run_dir))
    out = Path(out) if out is not None else run_dir
    out.mkdir(parents=True, exist_ok=True)
    summary = collect(run_dir)
    summary["bars"] = compute_bars(summary["models"], summary["stages"], demo_budget(run_dir))
    log = grpo_log(run_dir / "qponder")
    kl = [e["kl"] for e in log if e.get("kl") is not None]
    summary["grpo"] = {"steps": len(log), "reward_first": log[0]["reward"], "reward_last": log[-1]["reward"],
                       "kl_last": kl[-1] if kl else None} if log else None
    summary["diagnostics"] = diagnostics(run_dir, summary["models"], log)
    summary["family_naming"] = family_naming(run_dir, summary["models"])
    summary["plots"] = make_plots(run_dir, summary, out)
    (out / "report.md").write_text(render(summary, _examples(run_dir, out)))
    summary["report"] = str(out / "report.md")
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def compare_runs(run_dirs, out) -> Path:
    """Write out/compare.md: SRCC per model and split side by side for each run, plus each run's total time."""
    runs = {}
    for d in map(Path, run_dirs):
        _check_run(d)
        s = _read_json(d / "summary.json") if (d / "summary.json").is_file() else write_report(d)
        if not isinstance(s, dict) or not isinstance(s.get("models"), dict):
            raise QPonderError(f"report: {d / 'summary.json'} is not a run summary (no 'models'); delete it to rebuild")
        label = d.resolve().name if d.resolve().name not in runs else f"{d.resolve().parent.name}/{d.resolve().name}"
        runs[label] = s
    models = _order({m for s in runs.values() for m in s["models"]}, MODELS)
    rows = [[_name(m)] + [_fmt(_get(s["models"], m, sp, "srcc")) for s in runs.values() for sp in SPLITS]
            for m in models]
    rows += [[f"{_name(m)}, expected score"] + [_fmt(_get(s["models"], m, sp, "srcc_expected"))
                                                 for s in runs.values() for sp in SPLITS]
             for m in models if any(_get(s["models"], m, sp, "srcc_expected") is not None
                                    for s in runs.values() for sp in SPLITS)]
    bars = lambda s: sum(b.get("passed") is True for b in s.get("bars", []))  # noqa: E731
    applies = lambda s: sum(not b.get("not_applicable") for b in s.get("bars", []))  # noqa: E731
    rows += [["**total time (min)**"] + sum(([_fmt((s.get("total_seconds") or 0) / 60, 1), "", ""]
                                             for s in runs.values()), []),
             ["**bars passed**"] + sum(([f"{bars(s)}/{applies(s)}", "", ""] for s in runs.values()), [])]
    md = ["# Q-Ponder run comparison (SRCC)\n"]
    md += [f"- `{k}`: {s.get('run', '')}" + (f" (student: {s['student']})" if s.get("student") else "")
           for k, s in runs.items()] + [""]
    md += _table(["model"] + [f"{k} {sp}" for k in runs for sp in SPLITS], rows)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare.md").write_text("\n".join(md))
    return out / "compare.md"
