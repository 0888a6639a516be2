"""What SFT and GRPO share: loading and preparing the model, and running and saving a TRL trainer."""

from __future__ import annotations

import json
import os
from pathlib import Path

from qponder.errors import QPonderError


def vision_modules(model):
    """The vision tower of any supported VLM (AyaVision/LLaVA: vision_tower; Qwen-VL: visual)."""
    inner = getattr(model, "model", model)
    for name in ("vision_tower", "visual", "vision_model"):
        if hasattr(inner, name):
            return getattr(inner, name)
    raise QPonderError(f"{type(model).__name__}: cannot find the vision tower to freeze")


def projector_modules(model):
    """The projector between tower and LM (AyaVision/LLaVA: multi_modal_projector; Qwen-VL: visual.merger)."""
    inner = getattr(model, "model", model)
    if hasattr(inner, "multi_modal_projector"):
        return inner.multi_modal_projector
    if hasattr(getattr(inner, "visual", None), "merger"):
        return inner.visual.merger
    raise QPonderError(f"{type(model).__name__}: cannot find the projector between the vision tower and the LM")


class TowerLR:
    """Optimizer factory (transformers' ``optimizer_cls_and_kwargs``): AdamW with the vision tower and the
    projector each at its own lr.

    A pretrained tower trained at the random LM's lr loses its features (docs/student.md); a much smaller lr
    lets it adapt to quality cues instead. The projector is the other way round: at init it hides most of what the
    tower shows a linear probe (docs/results.md, stop 10), so it may learn faster than the LM. A factory, not a
    ready optimizer, so the Trainer builds it after placing the model on its device. Plain AdamW with torch's
    defaults (the Trainer's own betas and eps); weight decay, 0 in our recipes, then applies to every parameter.
    """

    def __call__(self, model, lr: float, vision_lr: float | None = None, projector_lr: float | None = None,
                 weight_decay: float = 0.0):
        import torch

        tower = {id(p) for p in vision_modules(model).parameters()}
        # Qwen-VL's merger sits inside its tower: the projector's own lr wins there
        proj = {id(p) for p in projector_modules(model).parameters()} if projector_lr is not None else set()
        params = [p for p in model.parameters() if p.requires_grad]
        groups = [{"params": [p for p in params if id(p) in proj], "lr": projector_lr},
                  {"params": [p for p in params if id(p) in tower and id(p) not in proj],
                   "lr": lr if vision_lr is None else vision_lr},
                  {"params": [p for p in params if id(p) not in tower and id(p) not in proj], "lr": lr}]
        return torch.optim.AdamW([g for g in groups if g["params"]], lr=lr, weight_decay=weight_decay)


def optimizer_args(recipe) -> dict:
    """Trainer kwargs for the recipe's optimizer: the default, or ``TowerLR`` when the tower or the projector
    has its own lr."""
    vision_lr = None if recipe.freeze_vision else recipe.vision_learning_rate
    projector_lr = recipe.projector_learning_rate
    if vision_lr is None and projector_lr is None:
        return {}
    if recipe.lora:
        raise QPonderError("vision_learning_rate and projector_learning_rate apply to full fine-tuning; with "
                           "lora: true the tower and projector are adapted through LoRA at the recipe's learning_rate")
    return {"optimizer_cls_and_kwargs": (TowerLR, {
        "lr": recipe.learning_rate, "vision_lr": None if vision_lr is None else float(vision_lr),
        "projector_lr": None if projector_lr is None else float(projector_lr), "weight_decay": recipe.weight_decay})}


def last_checkpoint(out: Path) -> str | None:
    from transformers.trainer_utils import get_last_checkpoint

    return get_last_checkpoint(str(out / "checkpoints")) if (out / "checkpoints").is_dir() else None


def prepare(recipe, out: Path):
    """(model, processor, peft_config, on_cpu) for a recipe with model / freeze_vision / lora* fields."""
    import torch

    from qponder.models import load

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ["TENSORBOARD_LOGGING_DIR"] = str(out / "logs")  # transformers 5 has no logging_dir argument
    launched = os.environ.get("ACCELERATE_MIXED_PRECISION", "no")  # what the accelerate config file asked for
    if torch.cuda.is_available() and launched != "no" and not recipe.bf16:
        # DeepSpeed would otherwise stop deep inside transformers on the bf16 mismatch
        raise QPonderError(f"the accelerate config asks for {launched} mixed precision but the recipe has "
                           "bf16: false; set bf16: true in the recipe (or --set bf16=true)")
    model, processor = load(recipe.model, trust_remote_code=recipe.trust_remote_code)
    if recipe.freeze_vision:
        for p in vision_modules(model).parameters():
            p.requires_grad_(False)
    peft_config = None
    if recipe.lora:
        from peft import LoraConfig

        peft_config = LoraConfig(r=recipe.lora_r, lora_alpha=recipe.lora_alpha, lora_dropout=recipe.lora_dropout,
                                 target_modules=recipe.lora_target_modules, task_type="CAUSAL_LM")
    return model, processor, peft_config, not torch.cuda.is_available()


def _zero3(trainer) -> bool:
    plugin = getattr(trainer.accelerator.state, "deepspeed_plugin", None)
    return bool(trainer.is_deepspeed_enabled and plugin and plugin.zero_stage == 3)


def load_checkpoint_weights(trainer) -> None:
    """Make ``trainer`` resume full-weight checkpoints through ``from_pretrained``.

    ``save_pretrained`` writes a VLM's weights under the original checkpoint names (``language_model.model.*``,
    DINOv2's ``attention.attention.query``), while transformers 5.24's ``Trainer._load_from_checkpoint`` feeds
    those raw names to ``load_state_dict(strict=False)``: no key matches, every weight is skipped with a warning,
    and the resumed run goes on from the step count and optimizer state of the checkpoint but the weights it
    started from (huggingface/transformers#48805). ``from_pretrained`` applies the name conversion.
    Adapter (PEFT) checkpoints keep the trainer's own loader, which reads them correctly; DeepSpeed and FSDP
    resume through their own code and never call this.
    """
    own = trainer._load_from_checkpoint

    def load(resume_from_checkpoint: str, model=None) -> None:
        model = trainer.model if model is None else model
        if hasattr(model, "peft_config") or not (Path(resume_from_checkpoint) / "config.json").is_file():
            return own(resume_from_checkpoint, model)
        saved = type(model).from_pretrained(resume_from_checkpoint, dtype=next(model.parameters()).dtype)
        model.load_state_dict(saved.state_dict(), strict=True)  # strict: a name that does not match is an error

    trainer._load_from_checkpoint = load


def _finished(trainer, ckpt: str) -> bool:
    """Whether a checkpoint holds the run's last step (DeepSpeed/FSDP resume through their own code: never)."""
    if trainer.is_deepspeed_enabled or trainer.is_fsdp_enabled or trainer.args.max_steps <= 0:
        return False
    state = json.loads((Path(ckpt) / "trainer_state.json").read_text())
    return state.get("global_step", 0) >= trainer.args.max_steps


def run(trainer, recipe, processor, out: Path, resume: bool) -> Path:
    """Train (from the last checkpoint when resuming) and write one plain HF folder to ``out``.

    Under ``accelerate launch`` every process trains but only the main one writes, so ranks never race on the
    same files; the others wait for it, so any rank may read ``out`` once this returns.
    """
    from qponder.config import dump
    from qponder.models import save

    main = trainer.is_world_process_zero()
    if main:
        dump(recipe, out / "recipe.yaml")
    load_checkpoint_weights(trainer)
    from qponder.models.tower_cache import cache_frozen_tower

    for model in (trainer.model, getattr(trainer, "ref_model", None)):
        if model is not None:
            cache_frozen_tower(model)  # a frozen tower's features are computed once per image, not once per use
    ckpt = last_checkpoint(out) if resume else None
    if ckpt and _finished(trainer, ckpt):
        # every step was trained and the run stopped before writing its folder. Resumed there, transformers 5.24
        # trains one step past max_steps (GRPO), so the checkpoint is taken as it is, with its log.
        from transformers import TrainerState

        trainer.state = TrainerState.load_from_json(str(Path(ckpt) / "trainer_state.json"))
        trainer._load_from_checkpoint(ckpt)
    else:
        trainer.train(resume_from_checkpoint=ckpt)
    # ZeRO-3 leaves each rank a shard of every weight: gathering them is collective, so all ranks call it
    state = trainer.accelerator.get_state_dict(trainer.model_wrapped) if _zero3(trainer) else None
    if main:
        final = trainer.model
        if recipe.lora:
            trainer.model.save_pretrained(out / "adapter", state_dict=state)
            if state is None:
                final = trainer.model.merge_and_unload()  # one plain HF folder for GRPO, eval and the Scorer
            else:  # the in-memory base weights are shards: merge the saved adapter into a fresh copy instead
                from peft import PeftModel

                from qponder.models import load

                base, _ = load(recipe.model, trust_remote_code=recipe.trust_remote_code)
                final, state = PeftModel.from_pretrained(base, out / "adapter").merge_and_unload(), None
        if state is None:
            save(final, processor, out)
        else:
            from qponder.models.hf import save_processor

            final.save_pretrained(out, state_dict=state)
            save_processor(processor, out)
        (out / "trainer_state.json").write_text(json.dumps(trainer.state.log_history, indent=1))
    trainer.accelerator.wait_for_everyone()
    return out
