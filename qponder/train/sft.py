"""Stage 1 training: supervised fine-tuning with TRL's SFTTrainer -> Q-Ponder-CI.

Targets follow the answer contract. From a distilled JSONL (``qponder distill``) each kept trace becomes
``<think>teacher reasoning</think><answer>S</answer>`` with S the MOS or the teacher's own score
(``target_score``); with ``reasoning: false`` (the paper's no-CoT ablation) or from a plain meta/CSV the
target is the answer alone. The loss covers the assistant turn only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

from qponder import prompts
from qponder.errors import QPonderError
from qponder.models.answer import format_answer, parse
from qponder.lexicon import SEVERITY_WORDS


@dataclass
class SFTRecipe:
    model: str = ""  # student folder (`qponder model init`) or any HF VLM folder / hub id
    data: str = ""  # distilled JSONL, or a meta JSON / CSV (answer-only targets from the MOS)
    images: str | None = None  # image root for relative paths (default: next to the data)
    out: str = "runs/sft"
    reasoning: bool = True  # False: answer only (no <think>), the paper's no-CoT baseline
    target_score: str = "mos"  # "mos" | "teacher": which score closes the target
    # also train an answer-only turn (no-think prompt, MOS target) for every image of the distilled JSONL,
    # kept or not: the human score then supervises the image read-out directly, beside the teacher's traces.
    # Off: on the embedded default with survey-first traces it gave one answer for every image (docs/results.md)
    direct_answers: bool = False
    # also train a perception turn for every image of the distilled JSONL that carries a distortion label, kept
    # or not: a short question, and the label's family and level as the answer (Q-Insight's degradation
    # perception task beside the scoring one), so that naming the defect is supervised by the label on every
    # image rather than only by the traces the filters kept
    perception_turns: bool = False
    lora: bool = False
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_target_modules: str = "all-linear"
    freeze_vision: bool = True  # measured: training the DINOv2 tower at the LM's lr destroys its features (docs/student.md)
    vision_learning_rate: float | None = None  # with freeze_vision: false, the tower's own lr (None: learning_rate)
    projector_learning_rate: float | None = None  # the projector's own lr (None: learning_rate)
    # regex over the assistant text -> weight of the target tokens it matches (others 1); see train/weighting.py
    loss_weights: dict = field(default_factory=dict)
    max_steps: int = 300  # <= 0: use num_train_epochs
    num_train_epochs: float = 1.0
    per_device_train_batch_size: int = 8
    gradient_accumulation_steps: int = 1
    learning_rate: float = 1e-3
    lr_scheduler_type: str = "cosine"
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    seed: int = 0
    logging_steps: int = 10
    save_steps: int = 100
    save_total_limit: int = 2
    bf16: bool | None = None  # None: wherever the device does bf16 natively (qponder.models.precision)
    gradient_checkpointing: bool = False
    report_to: str = "tensorboard"
    trust_remote_code: bool = False
    extra_args: dict = field(default_factory=dict)  # any other SFTConfig field, passed through


def _resolve(image: str, root: Path | None, base: Path) -> Path:
    p = Path(image)
    if p.is_absolute():
        return p
    return (root or base) / p


def sft_examples(recipe: SFTRecipe) -> list[dict]:
    """Rows of {"image": path, "completion": text, "think": bool} from a distilled JSONL or a meta/CSV."""
    data = Path(recipe.data)
    if not data.exists():
        raise QPonderError(f"{data}: training data not found")
    root = Path(recipe.images) if recipe.images else None
    rows = []
    if recipe.perception_turns and data.suffix != ".jsonl":
        raise QPonderError("perception_turns reads each image's `family` and `level` labels from a distilled JSONL")
    if recipe.direct_answers and not (recipe.reasoning and data.suffix == ".jsonl"):
        raise QPonderError("direct_answers adds answer-only turns to reasoning traces: it needs a distilled "
                           "JSONL and reasoning: true")
    if data.suffix == ".jsonl":
        for i, line in enumerate(data.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                d = json.loads(line)
            except json.JSONDecodeError:
                raise QPonderError(f"{data}: line {i} is not JSON") from None
            image = d.get("path") or d.get("image")
            if recipe.direct_answers:
                if image is None or not isinstance(d.get("mos"), (int, float)):
                    raise QPonderError(f"{data}: line {i} needs 'image' and a numeric 'mos' for direct_answers")
                rows.append({"image": str(_resolve(image, root, data.parent)), "completion": format_answer(d["mos"]),
                             "think": False})
            if recipe.perception_turns and d.get("family"):
                rows.append({"image": str(_resolve(image, root, data.parent)), "prompt": "student_perceive",
                             "completion": perception_answer(d["family"], d.get("level"), f"{data}: line {i}")})
            if not d.get("kept"):
                continue
            parsed = parse(d.get("text"))
            score = d["mos"] if recipe.target_score == "mos" else parsed.score
            if recipe.target_score not in ("mos", "teacher"):
                raise QPonderError(f"target_score must be 'mos' or 'teacher', not {recipe.target_score!r}")
            reasoning = parsed.reasoning if recipe.reasoning else None
            if recipe.reasoning and not reasoning:
                raise QPonderError(f"{data}: line {i} is kept but has no <think> reasoning")
            if image is None:
                raise QPonderError(f"{data}: line {i} has no 'image'")
            rows.append({"image": str(_resolve(image, root, data.parent)),
                         "completion": format_answer(score, reasoning), "think": recipe.reasoning})
    else:
        from qponder.data.records import check_images, load_records
        from qponder.eval.evaluate import default_image_root

        if recipe.reasoning:
            raise QPonderError(f"{data}: a meta/CSV has no reasoning; pass a distilled JSONL or use --no-reasoning")
        recs = load_records(data)
        root = root or default_image_root(data, recs)
        recs = check_images(recs, root, source=str(data))
        rows = [{"image": str(r.path(root)), "completion": format_answer(r.mos), "think": False} for r in recs]
    if recipe.perception_turns and not any(r.get("prompt") == "student_perceive" for r in rows):
        raise QPonderError(f"{data}: perception_turns needs a `family` label on its lines, and none has one")
    if not rows:
        raise QPonderError(f"{data}: no usable training examples (no kept traces?)")
    missing = [r["image"] for r in rows if not Path(r["image"]).is_file()]
    if missing:
        raise QPonderError(f"{data}: {len(missing)} training images are missing (first: {missing[0]})")
    return rows


# words that qponder.lexicon reads back as the family, in the form of the traces' "Main defect: ..." sentence
_PERCEIVED = {"blur": "blur", "noise": "noise", "compression": "compression artifacts", "color": "colour distortion",
              "brightness": "exposure problems", "spatial": "misaligned or pixelated patches",
              "sharpness_contrast": "contrast and sharpening problems"}


def perception_answer(family: str, level, where: str) -> str:
    """The perception turn's target: the labelled family and level in words, or that the image is clean."""
    if family == "none":
        return "Main defect: none; the image is clean."
    if family not in _PERCEIVED:
        raise QPonderError(f"{where}: unknown distortion family {family!r}; known: {', '.join(_PERCEIVED)}, none")
    if level not in SEVERITY_WORDS:
        raise QPonderError(f"{where}: level must be 1-5 for a distorted image, got {level!r}")
    return f"Main defect: {SEVERITY_WORDS[level][1]} {_PERCEIVED[family]}."


def make_dataset(rows: list[dict]):
    """A datasets.Dataset with ``messages`` and a lazily decoded ``image`` column (TRL's VLM layout).

    Each row is asked with the prompt of its kind: the reasoning prompt, or the no-think one.
    """
    from datasets import Dataset, Image

    from qponder.score import build_messages

    prompt = {True: prompts.load("student"), False: prompts.load("student_nothink")}
    own = {name: prompts.load(name) for name in {r["prompt"] for r in rows if r.get("prompt")}}
    ds = Dataset.from_dict({
        "image": [r["image"] for r in rows],
        "messages": [build_messages(own[r["prompt"]] if r.get("prompt") else prompt[r.get("think", True)],
                                    r["completion"]) for r in rows],
    })
    return ds.cast_column("image", Image())


def train(recipe: SFTRecipe, resume: bool = False) -> Path:
    """Run SFT and write an HF folder (model + processor) to ``recipe.out``; returns it."""
    from trl import SFTConfig, SFTTrainer

    from qponder.models.precision import use_bf16
    from qponder.train.common import optimizer_args, prepare, run

    if not recipe.model:
        raise QPonderError("sft: no --model given (a student folder from `qponder model init` or an HF VLM)")
    recipe = replace(recipe, bf16=use_bf16(recipe.bf16))  # recipe.yaml records what ran, not "auto"
    out = Path(recipe.out)
    rows = sft_examples(recipe)
    dataset = make_dataset(rows)
    model, processor, peft_config, cpu = prepare(recipe, out)
    args = SFTConfig(
        output_dir=str(out / "checkpoints"), max_steps=recipe.max_steps if recipe.max_steps > 0 else -1,
        num_train_epochs=recipe.num_train_epochs, per_device_train_batch_size=recipe.per_device_train_batch_size,
        gradient_accumulation_steps=recipe.gradient_accumulation_steps, learning_rate=recipe.learning_rate,
        lr_scheduler_type=recipe.lr_scheduler_type, warmup_steps=recipe.warmup_ratio,
        weight_decay=recipe.weight_decay, max_grad_norm=recipe.max_grad_norm, seed=recipe.seed,
        logging_steps=recipe.logging_steps, save_steps=recipe.save_steps, save_total_limit=recipe.save_total_limit,
        bf16=recipe.bf16, use_cpu=cpu, gradient_checkpointing=recipe.gradient_checkpointing,
        report_to=recipe.report_to, assistant_only_loss=True, max_length=None,
        remove_unused_columns=False, dataloader_num_workers=0, **recipe.extra_args)
    trainer_cls, extra = SFTTrainer, {}
    if recipe.loss_weights:
        from qponder.train.weighting import TokenWeights, WeightedSFTTrainer

        trainer_cls = WeightedSFTTrainer
        extra["token_weights"] = TokenWeights(getattr(processor, "tokenizer", processor), recipe.loss_weights)
    trainer = trainer_cls(model=model, args=args, train_dataset=dataset, processing_class=processor,
                          peft_config=peft_config, **optimizer_args(recipe), **extra)
    return run(trainer, recipe, processor, out, resume)
