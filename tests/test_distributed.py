"""Data parallel on CPU: `qponder sft`, `grpo` and `eval` run unchanged under `accelerate launch`, 2 processes.

The launch uses `--multi_gpu`, not `--cpu`: accelerate's `--cpu` path starts a single process (several need
mpirun), while `--multi_gpu` goes through torchrun; with no GPU visible each process then joins a gloo group.
CUDA_VISIBLE_DEVICES is emptied so the test means the same on a machine with GPUs.
"""

import json
import os
import subprocess
import sys

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from qponder.data.records import Record, write_meta
from qponder.errors import QPonderError
from qponder.models.build import init_model
from qponder.train.grpo import GRPORecipe, check_batch

LAUNCH = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
          "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0",
          "-m", "qponder.cli"]
N_IMAGES, SFT_STEPS, SFT_BATCH = 8, 80, 4


def launch(*args, cwd):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    res = subprocess.run([*LAUNCH, *map(str, args)], capture_output=True, text=True, cwd=cwd, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    return res


def changed(a: dict, b: dict) -> list[str]:
    return [k for k in a if not torch.equal(a[k], b[k])]


@pytest.fixture(scope="module")
def ci(tmp_path_factory):
    """Tiny preset, 8 images whose brightness encodes the MOS, and a 2-process SFT cold start (Q-Ponder-CI)."""
    root = tmp_path_factory.mktemp("ddp")
    init_model("tiny", root / "tiny")
    (root / "images").mkdir()
    recs = []
    for i in range(N_IMAGES):
        Image.new("RGB", (64, 48), (30 * i, 20, 200 - 20 * i)).save(root / "images" / f"{i}.png")
        recs.append(Record(f"{i}.png", 1 + i * 0.5, family="blur", level=1 + i % 5))
    write_meta(recs, root / "metas" / "train.json")
    # long enough that the answers parse, so GRPO below sees non-zero rewards
    res = launch("sft", "--model", "tiny", "--data", "metas/train.json", "--no-reasoning", "--out", "ci",
                 "--max-steps", SFT_STEPS, "--set", f"per_device_train_batch_size={SFT_BATCH}", "--set",
                 "learning_rate=5e-3", "--set", "save_steps=1000", "--set", "logging_steps=20", "--set",
                 "report_to=none", cwd=root)
    assert res.stderr.count("SFT -> ci") == 2  # both ranks trained and returned
    return root


def test_sft_two_processes(ci):
    out = ci / "ci"
    assert {"model.safetensors", "config.json", "recipe.yaml", "trainer_state.json"} <= {p.name for p in out.iterdir()}
    diff = changed(load_file(ci / "tiny" / "model.safetensors"), load_file(out / "model.safetensors"))
    assert diff and not any("vision_tower" in k for k in diff)
    logs = json.loads((out / "trainer_state.json").read_text())
    # two ranks each took SFT_BATCH images per step: the data went round twice as often as on one process
    assert logs[-1]["epoch"] == pytest.approx(SFT_STEPS * SFT_BATCH * 2 / N_IMAGES)
    losses = [h["loss"] for h in logs if "loss" in h]
    assert losses[-1] < 0.2 * losses[0]


def test_grpo_two_processes(ci):
    res = launch("grpo", "--model", "ci", "--data", "metas/train.json", "--out", "grpo", "--max-steps", 3,
                 "--set", "per_device_train_batch_size=4", "--set", "num_generations=4", "--set",
                 "max_completion_length=12", "--set", "learning_rate=1e-3", "--set", "beta=0.0", "--set",
                 "logging_steps=1", "--set", "save_steps=100", "--set", "report_to=none", cwd=ci)
    assert res.stderr.count("GRPO -> grpo") == 2
    out = ci / "grpo"
    assert changed(load_file(ci / "ci" / "model.safetensors"), load_file(out / "model.safetensors"))
    logs = [h for h in json.loads((out / "trainer_state.json").read_text()) if "reward" in h]
    assert len(logs) == 3 and any(h["rewards/format_lenient/mean"] > 0 for h in logs)


def test_grpo_batch_must_hold_whole_groups():
    ok = GRPORecipe(per_device_train_batch_size=4, num_generations=8, rewards="accuracy")
    check_batch(ok, 2)  # 4 x 2 processes = 8 completions: one group per step
    with pytest.raises(QPonderError, match=r"per_device_train_batch_size \(4\) x 3 processes .* = 12 .*"
                                           r"num_generations \(8\)"):
        check_batch(ok, 3)
    with pytest.raises(QPonderError, match=r"generation_batch_size \(12\) must be a multiple of .* = 8"):
        check_batch(GRPORecipe(per_device_train_batch_size=4, extra_args={"generation_batch_size": 12}), 2)
    check_batch(GRPORecipe(per_device_train_batch_size=3, num_generations=4,
                           extra_args={"steps_per_generation": 4}), 1)  # 3 x 1 x 4 = 12 = 3 groups


def test_sharded_eval_equals_single_process(ci):
    from qponder.eval.evaluate import evaluate, make_predictor, read_predictions

    meta = ci / "metas" / "train.json"
    single = evaluate(make_predictor(str(ci / "ci"), batch_size=2, max_new_tokens=16), meta, ci / "ev1",
                      batch_size=2, progress=False)
    res = launch("eval", "--model", "ci", "--data", "metas/train.json", "--out", "ev2", "--batch-size", 2,
                 "--max-new-tokens", 16, cwd=ci)
    assert res.stdout.count("per family") == 1  # only the main rank prints the table
    shards = [read_predictions(ci / "ev2" / f"predictions.rank{r}.jsonl") for r in (0, 1)]
    names = [[row["image"] for row in s] for s in shards]
    assert names == [[f"{i}.png" for i in range(r, N_IMAGES, 2)] for r in (0, 1)]  # strided, disjoint
    one, two = read_predictions(ci / "ev1" / "predictions.jsonl"), read_predictions(ci / "ev2" / "predictions.jsonl")
    assert [row["image"] for row in two] == [f"{i}.png" for i in range(N_IMAGES)]  # record order, no duplicates
    assert [(r["image"], r["score"], r["text"]) for r in one] == [(r["image"], r["score"], r["text"]) for r in two]
    assert all(r["ok"] for r in two)
    merged = json.loads((ci / "ev2" / "summary.json").read_text())
    timing = {"images_per_second", "wall_seconds", "data", "images"}  # data/images: paths relative to another cwd
    # the expected score reads logits, which other batch compositions move in the 8th digit (BLAS blocking)
    loose = timing | {k for k in single if k.endswith("_expected")}
    assert {k: v for k, v in merged.items() if k not in loose} == {k: v for k, v in single.items() if k not in loose}
    assert {k: merged[k] for k in loose - timing} == pytest.approx({k: single[k] for k in loose - timing}, rel=1e-6)
    assert merged["images_per_second"] > 0


def test_ranking_without_two_images_per_process_warns():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_batch(GRPORecipe(rewards="visualquality-r1"), 1)  # the defaults, 16 completions in groups of 4: 4 images
        check_batch(GRPORecipe(per_device_train_batch_size=8, num_generations=8), 1)  # qponder: no ranking
    with pytest.warns(UserWarning, match=r"= 8 completions over 2 process\(es\) in groups of 4 .* at most one image"):
        check_batch(GRPORecipe(per_device_train_batch_size=4, num_generations=4, rewards="visualquality-r1"), 2)
    with pytest.warns(UserWarning, match="ranking adds nothing"):
        check_batch(GRPORecipe(per_device_train_batch_size=4, num_generations=8, rewards={"ranking": 1.0},
                               extra_args={"steps_per_generation": 2}), 1)
