"""The main job: the whole Q-Ponder pipeline on the embedded default, stage by stage, resumable.

    synth -> student -> distill -> judge -> sft_no_reasoning -> ci (SFT) -> grpo (Q-Ponder) -> eval -> report

Each stage writes into its own folder under the run and drops a ``done`` marker when it has finished; a rerun
skips finished stages, and an interrupted one picks up where it stopped (distillation and evaluation append
row by row, training resumes from its last checkpoint). ``stages.json`` keeps each stage's wall time.

Every stage is the same code path as its CLI command, configured by the stage's own dataclass: the demo recipe
(``recipes/demo.yaml``) only holds per-stage overrides, and the run folder's paths are filled in here.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from qponder.errors import QPonderError

STAGES = ("synth", "student", "distill", "judge", "sft_no_reasoning", "ci", "grpo", "eval", "report")
SPLITS = ("test", "test_xtype", "test_compound")
console = Console(stderr=True)


# The defaults are the demo (recipes/demo.yaml spells them out): sized for 20 minutes on a 2-core CPU with fast
# bf16; the slower 2-core machines of stops 27-33 take 27-32 minutes (README). FULL (``qponder demo --full``) trains longer for better numbers.
@dataclass
class DemoRecipe:
    out: str = "runs/demo"
    preset: str = "wide"  # student preset (qponder.models.build.PRESETS): the 384-wide LM
    student: dict = field(default_factory=dict)  # StudentSpec fields over the preset (e.g. lm_hidden: 384)
    synth: dict = field(default_factory=dict)  # qponder.data.synth.SynthConfig fields (default: full build)
    # qponder.teachers.distill.DistillRecipe fields. check_family: qponder-synth has distortion labels, and
    # traces that name another family taught the student the teacher's misreadings (docs/results.md, stop 6)
    distill: dict = field(default_factory=lambda: {"check_family": True})
    # 600 steps: bf16 autocast made them as cheap as 300 in fp32 were, and the CI's test SRCC rose 0.37 -> 0.56
    # (docs/results.md, stop 14); the no-CoT ablation gets the same budget. lr 3e-4, not SFTRecipe's default 1e-3:
    # at 1e-3 the answer-only stage wrote a few unordered score levels (SRCC ~0.2); at 3e-4 it reads the image
    # (0.60-0.71 over two seeds; docs/results.md, stop 29)
    sft_no_reasoning: dict = field(default_factory=lambda: {"max_steps": 600, "save_steps": 200,
                                                            "learning_rate": 3e-4})
    sft: dict = field(default_factory=lambda: {"max_steps": 600, "save_steps": 200,
                                               "learning_rate": 3e-4})  # -> Q-Ponder-CI
    # CoT SFT starts from the no-CoT model (a curriculum): the reasoning is learnt on a student that already reads
    # the image's quality. It costs no extra step, and over two seeds each it gained +0.086 / +0.003 / +0.101 SRCC
    # over CoT SFT from the fresh student at the same lr (stop 29)
    ci_from_no_reasoning: bool = True
    # 8 images x 4 rollouts per step, 60 steps: from the same CI, +0.029 / +0.016 / +0.081 over three seeds against
    # +0.030 / +0.004 / +0.030 for 120 steps of 4 x 4 at the same cost (docs/results.md, stop 15)
    grpo: dict = field(default_factory=lambda: {
        "rewards": "qponder", "max_steps": 60, "per_device_train_batch_size": 32, "num_generations": 4,
        "max_completion_length": 192, "learning_rate": 2e-5, "beta": 0.04, "temperature": 1.0,
        "logging_steps": 2, "save_steps": 20})
    baselines: list[str] = field(default_factory=lambda: ["brisque", "niqe"])
    splits: list[str] = field(default_factory=lambda: list(SPLITS))
    test_stride: int = 4  # evaluate every Nth image of the `test` split (the cross-domain splits are smaller)
    batch_size: int = 32  # images per generate call in `eval`: 26 % faster than 8 on 2 cores, same answers (docs)
    max_new_tokens: int = 256


FULL = {"out": "runs/demo_full",
        "sft_no_reasoning": {**DemoRecipe().sft_no_reasoning, "max_steps": 900, "save_steps": 100},
        "sft": {**DemoRecipe().sft, "max_steps": 900, "save_steps": 100},
        "grpo": {**DemoRecipe().grpo, "max_steps": 200}, "test_stride": 1}


def full_overrides() -> list[str]:
    """FULL as ``--set key=value`` strings, so the user's own --set still wins."""
    return [f"{k}={json.dumps(v) if isinstance(v, dict) else v}" for k, v in FULL.items()]


def _dataclass(cls, overrides: dict, where: str, **paths):
    import dataclasses

    from qponder.config import typed

    names = {f.name for f in dataclasses.fields(cls)}
    bad = sorted(set(overrides) - names)
    if bad:
        raise QPonderError(f"demo recipe: unknown key(s) {', '.join(bad)} under `{where}`; "
                           f"valid keys: {', '.join(sorted(names))}")
    # the same typing as a stage's own recipe file: YAML 1.1 reads 2e-5 (no dot) as a string, for one
    return cls(**{**typed(cls, overrides, f"demo recipe `{where}`"), **paths})


class Run:
    """The run folder: stage markers and the timing ledger."""

    def __init__(self, recipe: DemoRecipe):
        self.recipe = recipe
        self.dir = Path(recipe.out)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ledger = self.dir / "stages.json"
        self.times = json.loads(self.ledger.read_text()) if self.ledger.exists() else {}

    def path(self, *parts: str) -> Path:
        return self.dir.joinpath(*parts)

    def done(self, stage: str) -> bool:
        return self.path(stage, "done").exists()

    def stage(self, i: int, stage: str, fn) -> None:
        label = f"[{i}/{len(STAGES)}] {stage}"
        if self.done(stage):
            console.print(f"[dim]{label}: done already ({self.times.get(stage, {}).get('seconds', '?')} s), skipped[/]")
            return
        console.rule(label)
        t0 = time.time()
        fn()
        seconds = round(time.time() - t0, 1)  # of the run that finished the stage
        self.times[stage] = {"seconds": seconds}
        self.ledger.write_text(json.dumps(self.times, indent=1))
        self.path(stage).mkdir(parents=True, exist_ok=True)
        self.path(stage, "done").write_text(time.strftime("%Y-%m-%dT%H:%M:%S\n"))
        console.print(f"{label}: {seconds:.0f} s")


def run_demo(recipe: DemoRecipe) -> dict:
    from qponder.config import dump

    check(recipe)
    run = Run(recipe)
    dump(recipe, run.path("demo.yaml"))
    r = recipe
    synth, meta = run.path("synth"), run.path("synth", "metas")
    distilled = run.path("distill", "train.jsonl")
    judge = run.path("judge", "judge.json")

    def do_synth():
        from qponder.data.synth import SynthConfig, build

        build(_dataclass(SynthConfig, r.synth, "synth", out=str(synth)))

    def do_student():
        from qponder.models.build import init_model

        init_model(r.preset, run.path("student"), **r.student)

    def do_distill():
        from qponder.teachers.distill import distill

        s = distill(_distill_recipe(r, meta, distilled))
        console.print(f"kept {s['kept']} of {s['images']} traces")

    def do_judge():
        from qponder.judge import fit_from_distilled

        j = fit_from_distilled(distilled)
        j.save(judge)
        console.print(f"judge: cross-validated SRCC {j.meta['cv_srcc']:.3f}, MAE {j.meta['cv_mae']:.3f}")

    def sft_stage(name: str, overrides: dict, reasoning: bool, start: Path):
        def go():
            from qponder.train.common import last_checkpoint
            from qponder.train.sft import SFTRecipe, train

            out = run.path(name)
            train(_dataclass(SFTRecipe, {"report_to": "tensorboard", **overrides}, name, model=str(start),
                             data=str(distilled), out=str(out), reasoning=reasoning),
                  resume=last_checkpoint(out) is not None)
        return go

    def do_grpo():
        from qponder.train.common import last_checkpoint
        from qponder.train.grpo import GRPORecipe, train

        out = run.path("qponder")
        train(_dataclass(GRPORecipe, {**r.grpo, "reward_kwargs": grpo_reward_kwargs(r.grpo, judge)}, "grpo",
                         model=str(run.path("ci")), data=str(meta / "train.json"), out=str(out)),
              resume=last_checkpoint(out) is not None)

    run.stage(1, "synth", do_synth)
    run.stage(2, "student", do_student)
    run.stage(3, "distill", do_distill)
    run.stage(4, "judge", do_judge)
    run.stage(5, "sft_no_reasoning", sft_stage("sft_no_reasoning", r.sft_no_reasoning, False, run.path("student")))
    ci_start = run.path("sft_no_reasoning") if r.ci_from_no_reasoning else run.path("student")
    run.stage(6, "ci", sft_stage("ci", r.sft, True, ci_start))
    run.stage(7, "grpo", do_grpo)
    run.stage(8, "eval", lambda: evaluate_all(run, judge))

    def do_report():
        from qponder.report import write_report

        console.print(f"report: {write_report(run.dir)['report']}")

    # the report is rebuilt on every run: it is cheap and must reflect the latest stages
    run.path("report", "done").unlink(missing_ok=True)
    run.stage(9, "report", do_report)
    return json.loads(run.path("summary.json").read_text())


def check(r: DemoRecipe) -> None:
    """Every stage's overrides fit its recipe, before any stage spends minutes (a typo in `grpo` fails now)."""
    from qponder.data.synth import SynthConfig
    from qponder.models.build import StudentSpec, get_preset
    from qponder.teachers.distill import DistillRecipe
    from qponder.train.grpo import GRPORecipe, check_aggregation, reward_functions
    from qponder.train.sft import SFTRecipe

    _dataclass(SynthConfig, r.synth, "synth", out="x").resolved()
    _dataclass(StudentSpec, r.student, "student")
    _dataclass(DistillRecipe, r.distill, "distill")
    _dataclass(SFTRecipe, r.sft_no_reasoning, "sft_no_reasoning")
    _dataclass(SFTRecipe, r.sft, "sft")
    g = _dataclass(GRPORecipe, r.grpo, "grpo")
    reward_functions(g.rewards, g.reward_kwargs)
    check_aggregation(g)
    from qponder.config import typed
    from qponder.rewards import weights

    # stored typed, so the run's demo.yaml reads back as it ran (a --set "2e-05" would stay a string there)
    for name, cls in (("synth", SynthConfig), ("student", StudentSpec), ("distill", DistillRecipe),
                      ("sft_no_reasoning", SFTRecipe), ("sft", SFTRecipe), ("grpo", GRPORecipe)):
        setattr(r, name, typed(cls, getattr(r, name), f"demo recipe `{name}`"))
    get_preset(r.preset, **r.student)  # an unknown preset fails now too
    # a preset's name is stored as its weights: the run must say what it trained with after a preset changes
    r.grpo["rewards"] = weights(g.rewards)
    from qponder.eval.baselines import create_baseline

    for name in r.baselines:  # a missing package must fail now, not in the eval stage after the training ones
        create_baseline(name).load()
    unknown = set(r.splits) - set(SPLITS)
    if unknown:
        raise QPonderError(f"demo recipe: unknown split(s) {', '.join(sorted(unknown))}; valid: {', '.join(SPLITS)}")


def grpo_reward_kwargs(grpo: dict, judge: Path) -> dict:
    """A GRPO section's reward_kwargs, with the consistency reward reading the judge fitted on the run's own
    traces unless the section names another (the stage-2 benchmarks start from a run and must match it); the
    section's other consistency settings are kept."""
    from qponder.rewards import weights

    kw = dict(grpo.get("reward_kwargs", {}))
    if "consistency" in weights(grpo.get("rewards", "qponder")):
        kw["consistency"] = {"judge": str(judge), **kw.get("consistency", {})}
    return kw


def _distill_recipe(r: DemoRecipe, meta: Path, distilled: Path):
    from qponder.teachers.distill import DistillRecipe

    return _dataclass(DistillRecipe, r.distill, "distill", data=str(meta / "train.json"), out=str(distilled))


def evaluate_all(run: Run, judge: Path, extra: dict | None = None) -> None:
    """Every model on every split into eval/MODEL/SPLIT (each pair resumable on its own).

    ``extra``: more reasoning models by name -> folder (the stage-2 ablations), evaluated the same way.
    """
    from qponder.data.records import load_records
    from qponder.eval.evaluate import default_image_root, evaluate, make_predictor
    from qponder.judge import TextJudge

    r, meta = run.recipe, run.path("synth", "metas")
    j = TextJudge.load(judge)
    models: dict[str, callable] = {b: (lambda b=b: make_predictor(b)) for b in r.baselines}
    models["teacher"] = lambda: _teacher_predictor(r, meta)
    for name, think in (("sft_no_reasoning", False), ("ci", True), ("qponder", True)):
        models[name] = lambda name=name, think=think: make_predictor(
            str(run.path(name)), think=think, batch_size=r.batch_size, max_new_tokens=r.max_new_tokens)
    for name, path in (extra or {}).items():
        models[name] = lambda path=path: make_predictor(str(path), batch_size=r.batch_size,
                                                        max_new_tokens=r.max_new_tokens)
    splits = {s: load_records(meta / f"{s}.json")[:: r.test_stride if s == "test" else 1] for s in r.splits}
    for name, make in models.items():
        predictor = None
        for split, records in splits.items():
            out = run.path("eval", name, split)
            done = out / "summary.json"
            if done.exists() and json.loads(done.read_text()).get("n") == len(records):
                continue
            predictor = predictor or make()
            console.print(f"eval {name} on {split} ({len(records)} images)")
            s = evaluate(predictor, meta / f"{split}.json", out, images=default_image_root(meta / f"{split}.json",
                         records), records=records, batch_size=r.batch_size, judge=j)
            f = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731  (constant predictions have no SRCC)
            exp = f"  (expected score: SRCC {f(s['srcc_expected'])})" if "srcc_expected" in s else ""
            console.print(f"  SRCC {f(s['srcc'])}  PLCC {f(s['plcc'])}  parse failures {s['parse_fail_rate']:.1%}{exp}")


def _teacher_predictor(r: DemoRecipe, meta: Path):
    """The same calibrated attribute teacher the distillation used (refitted: it is deterministic)."""
    from qponder.data.records import load_records
    from qponder.eval.evaluate import default_image_root
    from qponder.teachers import TeacherPredictor
    from qponder.teachers.distill import make_teacher

    recipe = _distill_recipe(r, meta, Path("unused"))
    recs = load_records(recipe.data)
    return TeacherPredictor(make_teacher(recipe, recs, default_image_root(Path(recipe.data), recs)))
