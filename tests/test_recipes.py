"""Every shipped recipe parses into its dataclass, and command-line overrides win."""

from pathlib import Path

import pytest
import yaml

from qponder.config import build
from qponder.errors import QPonderError
from qponder.teachers.distill import DistillRecipe
from qponder.train.grpo import GRPORecipe
from qponder.train.sft import SFTRecipe
from qponder.train.tower import TowerRecipe

RECIPES = Path(__file__).parent.parent / "recipes"


ACCELERATE = RECIPES / "accelerate"
STAGES = {"distill": DistillRecipe, "sft": SFTRecipe, "grpo": GRPORecipe, "tower": TowerRecipe, "demo": None}


@pytest.mark.parametrize("path", sorted(p for p in RECIPES.rglob("*.yaml") if ACCELERATE not in p.parents),
                         ids=lambda p: str(p.relative_to(RECIPES)))
def test_recipe_parses(path):
    stage = next((s for s in STAGES if path.name.startswith(s)), None)
    assert stage is not None, f"{path.name}: name a recipe after its stage ({', '.join(STAGES)})"
    if STAGES[stage] is None:
        return  # demo.yaml drives `qponder demo`, which has its own tests
    r = build(STAGES[stage], path)  # unknown keys and ill-typed values raise QPonderError
    assert r.data and r.out


def test_gpu_recipes_are_consistent():
    from qponder.train.grpo import check_batch

    for path in sorted(RECIPES.glob("qwen*/grpo*.yaml")):
        r = build(GRPORecipe, path)
        assert r.bf16 and r.gradient_checkpointing, path  # the accelerate configs all ask for bf16
        check_batch(r, 8 if "full" in path.name else 1)  # the GPU counts their comments promise
    assert build(GRPORecipe, RECIPES / "qwen2.5-vl-7b" / "grpo_full.yaml").use_vllm


@pytest.mark.parametrize("path", sorted(ACCELERATE.glob("*.yaml")), ids=lambda p: p.name)
def test_accelerate_config_parses(path):
    from accelerate.commands.config.config_args import load_config_from_file

    raw = yaml.safe_load(path.read_text())
    cfg = load_config_from_file(str(path))  # accelerate's own reader: an unknown key is a TypeError
    assert cfg.mixed_precision == "bf16" and cfg.use_cpu is False
    kind = path.stem
    expected = {"single_gpu": "NO", "ddp": "MULTI_GPU"}.get(kind, "DEEPSPEED")
    assert raw["distributed_type"] == expected and cfg.distributed_type.value == expected
    if expected == "DEEPSPEED":
        ds = raw["deepspeed_config"]
        assert ds["zero_stage"] == (2 if kind.startswith("zero2") else 3)
        offload = "cpu" if kind.endswith("offload") else "none"
        assert ds["offload_optimizer_device"] == offload
        if ds["zero_stage"] == 3:
            assert ds["zero3_save_16bit_model"]  # else the final model cannot be gathered into one folder
    if kind == "multi_node":
        assert raw["num_machines"] > 1 and raw["num_processes"] % raw["num_machines"] == 0
        assert {"main_process_ip", "main_process_port", "machine_rank"} <= set(raw)
    else:
        assert raw["num_machines"] == 1


def test_standalone_sft_recipe_is_the_demos_stage():
    # `qponder sft --config recipes/sft.yaml` must train what the demo's SFT stages train (stop 29: lr 1e-3, the
    # dataclass default, left the answer-only model unordered)
    from qponder.demo import DemoRecipe

    r, demo = build(SFTRecipe, RECIPES / "sft.yaml"), DemoRecipe()
    for stage in (demo.sft, demo.sft_no_reasoning):
        assert (r.learning_rate, r.max_steps) == (stage["learning_rate"], stage["max_steps"])
    # the dataclass default is what older runs' demo.yaml (no lr) rebuild with, so the recipe sets its own
    assert r.learning_rate != SFTRecipe().learning_rate


def test_overrides_and_errors(tmp_path):
    r = build(SFTRecipe, RECIPES / "sft.yaml", ["learning_rate=5e-4", "lora=true"], max_steps=7, out=None)
    assert (r.learning_rate, r.lora, r.max_steps, r.out) == (5e-4, True, 7, "runs/demo/ci")
    assert build(SFTRecipe, None, [], model="m").model == "m"  # no recipe file at all
    with pytest.raises(QPonderError, match="unknown key 'learning_rat'"):
        build(SFTRecipe, RECIPES / "sft.yaml", ["learning_rat=1"])
    with pytest.raises(QPonderError, match="max_steps: 'many' is not a valid int"):
        build(SFTRecipe, None, ["max_steps=many"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(QPonderError, match="not valid YAML"):
        build(SFTRecipe, bad)


def test_dotted_override_sets_one_key_of_a_section():
    from qponder.demo import DemoRecipe

    r = build(DemoRecipe, RECIPES / "demo.yaml", ["grpo.seed=3", "distill.diagnosis_first=false"])
    assert r.grpo["seed"] == 3 and r.grpo["max_steps"] == 60  # the file's other keys of the section stay
    assert r.distill["diagnosis_first"] is False
    g = build(DemoRecipe, None, ["grpo.beta=0.1"]).grpo  # no file: on top of the built-in section
    assert g["beta"] == 0.1 and g["max_steps"] == 60
    with pytest.raises(QPonderError, match="'test_stride' is not a mapping section"):
        build(DemoRecipe, None, ["test_stride.x=1"])
