"""A few GRPO steps on the tiny preset run end to end, log every reward term, and change the weights."""

import json

import pytest
import torch
import yaml
from PIL import Image
from safetensors.torch import load_file

from qponder.data.records import Record, write_meta
from qponder.errors import QPonderError
from qponder.models.build import init_model
from qponder.train.grpo import GRPORecipe, check_extra_args, reward_functions, train


def test_unknown_reward_is_a_clear_error():
    with pytest.raises(QPonderError, match="unknown reward 'acuracy'"):
        reward_functions({"acuracy": 1.0}, {})
    funcs, weights = reward_functions({"accuracy_threshold": 1.0}, {"accuracy_threshold": {"eps": 0.5}})
    assert [f.__name__ for f in funcs] == ["accuracy_threshold", "format_lenient"] and weights == [1.0, 0.0]
    assert funcs[0](["<answer>3.40</answer>"], mos=[3.0]) == [1.0]  # the recipe's eps reached the function
    funcs, weights = reward_functions("qponder", {})
    assert [f.__name__ for f in funcs] == ["format", "accuracy_continuous", "consistency", "degradation",
                                           "format_lenient"]
    assert weights == [0.2, 1.0, 0.25, 0.25, 0.0]
    with pytest.raises(QPonderError, match="unknown reward preset 'qpondr'"):
        reward_functions("qpondr", {})
    with pytest.raises(QPonderError, match="does not use: ranking"):
        reward_functions("qponder", {"ranking": {}})


@pytest.mark.timeout(600)
def test_a_few_grpo_steps_change_the_weights(tmp_path):
    init_model("tiny", tmp_path / "tiny")
    (tmp_path / "images").mkdir()
    recs = []
    for i in range(8):
        Image.new("RGB", (64, 48), (30 * i, 20, 200 - 20 * i)).save(tmp_path / "images" / f"{i}.png")
        # half the images carry no distortion label, as on KonIQ: degradation returns None for them and TRL
        # must still train on the rest of the mix (one image per step here, so a step may have no label at all)
        recs.append(Record(f"{i}.png", 1 + i * 0.5, family="blur", level=1 + i % 5) if i % 2 else
                    Record(f"{i}.png", 1 + i * 0.5))
    write_meta(recs, tmp_path / "metas" / "train.json")
    # GRPO starts from a cold-started model (Q-Ponder-CI): a random one never parses, so every reward is 0
    # and GRPO has no advantage to follow
    from qponder.train.sft import SFTRecipe
    from qponder.train.sft import train as sft

    ci = sft(SFTRecipe(model=str(tmp_path / "tiny"), data=str(tmp_path / "metas" / "train.json"), reasoning=False,
                       out=str(tmp_path / "ci"), max_steps=150, per_device_train_batch_size=8, learning_rate=5e-3,
                       save_steps=1000, report_to="none"))
    before = load_file(ci / "model.safetensors")
    # the tiny CI is nearly deterministic: at T 0.8 (AMD, stop 8) every group agreed, so every advantage was 0
    recipe = GRPORecipe(model=str(ci), data=str(tmp_path / "metas" / "train.json"),
                        out=str(tmp_path / "grpo"), max_steps=3, per_device_train_batch_size=4, num_generations=4,
                        max_completion_length=12, learning_rate=1e-3, beta=0.0, temperature=1.5, logging_steps=1, save_steps=3,
                        report_to="none", static_cache=True,  # the fp32 CPU default, forced where bf16 runs
                        rewards={"format": 0.5, "accuracy_continuous": 1.0, "consistency": 0.25, "degradation": 0.5})
    out = train(recipe)
    written = yaml.safe_load((out / "recipe.yaml").read_text())
    assert written["static_cache"] is True
    assert written["multi_objective_aggregation"] == "sum_then_normalize"  # what turned the terms into advantages
    after = load_file(out / "model.safetensors")
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert changed and not any("vision_tower" in k for k in changed)  # the frozen tower stays as it was
    logs = [h for h in json.loads((out / "trainer_state.json").read_text()) if "reward" in h]
    assert logs and all(f"rewards/{n}/mean" in logs[0]
                        for n in ("format", "accuracy_continuous", "consistency", "degradation", "format_lenient"))
    assert any(h["rewards/format_lenient/mean"] > 0 for h in logs)

    # a finished run resumed (the demo killed after training, before its stage marker) trains no step past
    # max_steps (transformers 5.24 would add one) and keeps its weights and log
    train(recipe, resume=True)
    again = load_file(out / "model.safetensors")
    assert all(torch.equal(after[k], again[k]) for k in after)
    assert [p.name for p in (out / "checkpoints").glob("checkpoint-*")] == ["checkpoint-3"]
    assert [h for h in json.loads((out / "trainer_state.json").read_text()) if "reward" in h] == logs


def test_a_bad_aggregation_is_a_clear_error_before_training(tmp_path):
    from qponder.train.grpo import check_aggregation

    check_aggregation(GRPORecipe(multi_objective_aggregation="sum_then_normalize"))
    with pytest.raises(QPonderError, match="multi_objective_aggregation is 'mean'; use one of sum_then_normalize"):
        train(GRPORecipe(model="x", data="y", multi_objective_aggregation="mean", out=str(tmp_path / "g")))
    assert not (tmp_path / "g").exists()  # refused before anything was written
    with pytest.raises(QPonderError, match="extra_args sets multi_objective_aggregation"):
        check_extra_args(GRPORecipe(extra_args={"multi_objective_aggregation": "sum_then_normalize"}))


def test_extra_args_may_not_repeat_a_recipe_setting():
    check_extra_args(GRPORecipe(extra_args={"min_p": 0.05, "scale_rewards": "batch"}))  # GRPOConfig-only: fine
    with pytest.raises(QPonderError, match="extra_args sets output_dir, top_p, which the recipe sets itself"):
        check_extra_args(GRPORecipe(extra_args={"top_p": 0.9, "output_dir": "x"}))
