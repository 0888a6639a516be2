"""Stage 2 training: GRPO with TRL's GRPOTrainer from Q-Ponder-CI -> Q-Ponder.

Rewards come from ``qponder.rewards`` by name, weighted by the recipe. Every reward term's mean/std is
logged by TRL; ``format_lenient`` always runs (at weight 0 unless the recipe weights it) so the share of
parseable completions is in the logs.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from qponder import prompts
from qponder.errors import QPonderError


@dataclass
class GRPORecipe:
    model: str = ""  # Q-Ponder-CI folder (or any VLM)
    data: str = ""  # meta JSON / CSV with MOS (and distortion labels for `degradation`)
    images: str | None = None
    out: str = "runs/grpo"
    rewards: dict | str = "qponder"  # a preset name (qponder.rewards.PRESETS) or {reward name: weight}
    reward_kwargs: dict = field(default_factory=dict)  # e.g. {"consistency": {"judge": "runs/x/judge.json"}}
    lora: bool = False
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_target_modules: str = "all-linear"
    freeze_vision: bool = True
    max_steps: int = 50
    per_device_train_batch_size: int = 16  # 4 images x 4 rollouts (the demo: 8 x 4, stop 15); 2 x 8 learnt less (stop 7)
    gradient_accumulation_steps: int = 1
    num_generations: int = 4
    max_completion_length: int = 256
    temperature: float = 1.0
    # the rollouts' nucleus; 0.9 ended the 15 % of a small student's rollouts that fail to parse at 1.0, but
    # the training reward stopped rising with them (docs/results.md, stop 8), so 1.0 stays the default
    top_p: float = 1.0
    learning_rate: float = 1e-5
    beta: float = 0.04
    loss_type: str = "grpo"
    seed: int = 0
    logging_steps: int = 5
    save_steps: int = 25
    save_total_limit: int = 2
    bf16: bool | None = None  # None: wherever the device does bf16 natively (qponder.models.precision)
    # with bf16 on a CPU: rollouts from a bf16 copy of the policy (qponder.train.rollouts); full weights only
    bf16_rollouts: bool = True
    # rollouts with a static KV cache (None: on a CPU in fp32, the same tokens 1.32x faster; see
    # qponder.models.precision.use_static_cache); TRL's own generation path only, not vLLM
    static_cache: bool | None = None
    gradient_checkpointing: bool = False  # 7B-scale policies need it; the tiny CPU students are faster without
    use_vllm: bool = False
    vllm_mode: str = "colocate"
    report_to: str = "tensorboard"
    trust_remote_code: bool = False
    extra_args: dict = field(default_factory=dict)
    # How TRL turns the reward terms into one advantage: sum_then_normalize (TRL's default) sums the weighted terms,
    # then normalises within the group, so a term with little spread inside a group moves little whatever its
    # weight; normalize_then_sum (GDPO) scales every term to unit spread in its group first, so the weights set the
    # shares. With it the threshold-gated consistency term at 1.0 left the greedy consistency rate higher by +0.032
    # over ten seed pairs (p = 0.09) and the sampled one as it was, so the default stays (docs/results.md, stop 25).
    multi_objective_aggregation: str = "sum_then_normalize"


AGGREGATIONS = ("sum_then_normalize", "normalize_then_sum")


def reward_functions(weights: dict, kwargs: dict) -> tuple[list, list[float]]:
    """Named callables for TRL (it logs each under its __name__), and their weights."""
    from qponder.rewards import REWARDS
    from qponder.rewards import weights as resolve

    weights = resolve(weights)
    unknown = set(kwargs) - set(weights)
    if unknown:
        raise QPonderError(f"reward_kwargs for rewards the recipe does not use: {', '.join(sorted(unknown))}")
    weights = dict(weights)
    weights.setdefault("format_lenient", 0.0)  # logged as the parse-success rate
    funcs, ws = [], []
    for name, w in weights.items():
        if name not in REWARDS:
            raise QPonderError(f"unknown reward {name!r}; available: {', '.join(REWARDS)}")
        fn, kw = REWARDS[name], dict(kwargs.get(name, {}))
        # a dry call: a bad setting (a consistency gate, a judge path) fails here, before the model loads
        fn([], mos=[], image=[], family=[], level=[], **kw)

        def bound(completions, _fn=fn, _kw=kw, **cols):
            return _fn(completions, **cols, **_kw)

        bound.__name__ = name
        funcs.append(bound)
        ws.append(float(w))
    return funcs, ws


def make_dataset(data: str, images: str | None):
    from datasets import Dataset, Image

    from qponder.data.records import check_images, load_records
    from qponder.eval.evaluate import default_image_root

    recs = load_records(data)
    root = Path(images) if images else default_image_root(Path(data), recs)
    recs = check_images(recs, root, source=str(data))
    prompt = prompts.load("student")
    ds = Dataset.from_dict({
        "prompt": [[{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]] * len(recs),
        "image": [str(r.path(root)) for r in recs],
        "mos": [r.mos for r in recs],
        "family": [r.family for r in recs],
        "level": [r.level for r in recs],
    })
    return ds.cast_column("image", Image())


def check_batch(recipe: GRPORecipe, world_size: int) -> None:
    """Fail early, naming the recipe fields, when TRL could not fill generation batches with whole prompt groups.

    Each process takes ``per_device_train_batch_size`` completions per step; one generation batch spans every
    process and ``steps_per_generation`` steps, and must hold whole groups of ``num_generations`` completions of
    one prompt, so the same recipe can be valid on 1 GPU and invalid on 3.
    """
    b, g, extra = recipe.per_device_train_batch_size, recipe.num_generations, recipe.extra_args
    if g < 2:
        raise QPonderError(f"grpo: num_generations is {g}; GRPO needs at least 2 completions per prompt")
    if "generation_batch_size" in extra and "steps_per_generation" in extra:
        raise QPonderError("grpo: extra_args sets both generation_batch_size and steps_per_generation; keep one")
    step = b * world_size
    if "generation_batch_size" in extra:
        gen = int(extra["generation_batch_size"])
        if gen % step:
            raise QPonderError(f"grpo: extra_args.generation_batch_size ({gen}) must be a multiple of "
                               f"per_device_train_batch_size ({b}) x {world_size} processes = {step}")
        how = f"extra_args.generation_batch_size ({gen})"
    else:
        steps = int(extra.get("steps_per_generation", recipe.gradient_accumulation_steps))
        gen = step * steps
        how = (f"per_device_train_batch_size ({b}) x {world_size} processes x "
               + (f"extra_args.steps_per_generation ({steps})" if "steps_per_generation" in extra
                  else f"gradient_accumulation_steps ({steps})") + f" = {gen}")
    if gen % g:
        raise QPonderError(f"grpo: the generation batch, {how} completions, is not a multiple of num_generations "
                           f"({g}); with {world_size} processes pick per_device_train_batch_size so that "
                           f"per_device_train_batch_size x {world_size} is a multiple of {g}, or change num_generations")
    from qponder.rewards import weights

    # TRL scores each process's share of the generation batch on its own, so that is where ranking finds its pairs;
    # with one image it returns None and the mix runs without it: legal, but rarely what the recipe meant
    images = gen // world_size // g
    if weights(recipe.rewards).get("ranking", 0) and images < 2:
        warnings.warn(f"grpo: the ranking reward compares the images of one process's generation batch, and "
                      f"{how} completions over {world_size} process(es) in groups of {g} give each process "
                      f"at most one image, so ranking adds nothing; raise per_device_train_batch_size "
                      f"(or steps_per_generation) to at least 2 x num_generations, or drop ranking from rewards",
                      stacklevel=2)


def check_aggregation(recipe: GRPORecipe) -> None:
    if recipe.multi_objective_aggregation not in AGGREGATIONS:
        raise QPonderError(f"grpo: multi_objective_aggregation is {recipe.multi_objective_aggregation!r}; "
                           f"use one of {', '.join(AGGREGATIONS)}")


def check_extra_args(recipe: GRPORecipe) -> None:
    """extra_args reach GRPOConfig beside the settings the recipe passes itself; the same name twice is a mistake."""
    own = {f.name for f in fields(GRPORecipe)} | {"output_dir", "use_cpu", "reward_weights", "remove_unused_columns",
                                                 "dataloader_num_workers"}
    both = sorted(own & set(recipe.extra_args))
    if both:
        raise QPonderError(f"grpo: extra_args sets {', '.join(both)}, which the recipe sets itself; "
                           f"use the recipe's own key{'s' if len(both) > 1 else ''} instead")


def train(recipe: GRPORecipe, resume: bool = False) -> Path:
    from trl import GRPOConfig, GRPOTrainer

    from qponder.models.precision import use_bf16, use_static_cache
    from qponder.rewards import weights
    from qponder.train.common import prepare, run

    if not recipe.model or not recipe.data:
        raise QPonderError("grpo: --model (Q-Ponder-CI folder) and --data (meta/CSV with MOS) are required")
    world = int(os.environ.get("WORLD_SIZE", "1"))  # set by accelerate launch / torchrun
    check_batch(recipe, world)
    check_extra_args(recipe)
    check_aggregation(recipe)
    # recipe.yaml records the weights, not a preset's name, whose meaning may change between versions
    recipe = replace(recipe, rewards=weights(recipe.rewards), bf16=use_bf16(recipe.bf16))
    out = Path(recipe.out)
    dataset = make_dataset(recipe.data, recipe.images)
    model, processor, peft_config, cpu = prepare(recipe, out)
    funcs, weights = reward_functions(recipe.rewards, recipe.reward_kwargs)
    static = use_static_cache(recipe.static_cache, "cpu" if cpu else "cuda", recipe.bf16) and not recipe.use_vllm
    recipe = replace(recipe, static_cache=static)  # recipe.yaml records what ran
    extra = dict(recipe.extra_args)  # an explicit extra_args.cache_implementation wins
    if static:
        extra.setdefault("cache_implementation", "static")
    args = GRPOConfig(
        output_dir=str(out / "checkpoints"), max_steps=recipe.max_steps,
        per_device_train_batch_size=recipe.per_device_train_batch_size,
        gradient_accumulation_steps=recipe.gradient_accumulation_steps, num_generations=recipe.num_generations,
        max_completion_length=recipe.max_completion_length, temperature=recipe.temperature, top_p=recipe.top_p,
        learning_rate=recipe.learning_rate, beta=recipe.beta, loss_type=recipe.loss_type, seed=recipe.seed,
        logging_steps=recipe.logging_steps, save_steps=recipe.save_steps, save_total_limit=recipe.save_total_limit,
        bf16=recipe.bf16, use_cpu=cpu, use_vllm=recipe.use_vllm, vllm_mode=recipe.vllm_mode,
        reward_weights=weights, multi_objective_aggregation=recipe.multi_objective_aggregation,
        report_to=recipe.report_to, gradient_checkpointing=recipe.gradient_checkpointing,
        remove_unused_columns=False, dataloader_num_workers=0, **extra)
    trainer_cls = GRPOTrainer
    if cpu and recipe.bf16 and recipe.bf16_rollouts and not recipe.lora and not recipe.use_vllm and world == 1:
        from qponder.models import load
        from qponder.train.rollouts import bf16_rollouts

        trainer_cls = bf16_rollouts(GRPOTrainer,
                                    lambda: load(recipe.model, trust_remote_code=recipe.trust_remote_code)[0])
    trainer = trainer_cls(model=model, reward_funcs=funcs, args=args, train_dataset=dataset,
                          processing_class=processor, peft_config=peft_config)
    return run(trainer, recipe, processor, out, resume)
