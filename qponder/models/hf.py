"""Load any Hugging Face VLM (local folder or hub id) as ``(model, processor)``, with or without torchvision.

Without torchvision, ``AutoProcessor`` fails on every processor that owns a video processor (the video
processors of Qwen2-VL, Qwen2.5-VL and Qwen3-VL are torchvision-only). qponder only feeds images, so for
those processors we build an *image-only* subclass: ``ProcessorMixin`` derives its sub-processors from the
``__init__`` signature, so dropping ``video_processor`` from the signature removes the video half, and the
image half uses the PIL image processor. Folders saved from such a processor are rewritten to name the
public class (see ``save_processor``), so they load with stock ``AutoProcessor`` wherever torchvision works.
See shared/research/stack.md, section 2.
"""

from __future__ import annotations

import functools
import inspect
import json
import os
import sys
from pathlib import Path
from typing import Any

from qponder.errors import QPonderError

# Processors we know to be image-complete without their video half; any other processor goes through
# AutoProcessor first and only falls back to an image-only subclass when the failure is about video.
_QWEN_VIDEO_PROCESSORS = {
    "Qwen2VLProcessor": "Qwen2VLVideoProcessor",
    "Qwen2_5_VLProcessor": "Qwen2VLVideoProcessor",
    "Qwen3VLProcessor": "Qwen3VLVideoProcessor",
}
_QWEN_PROCESSORS = tuple(_QWEN_VIDEO_PROCESSORS)
_IMAGE_ONLY_PREFIX = "ImageOnly"
_PROCESSOR_FILES = ("processor_config.json", "preprocessor_config.json", "tokenizer_config.json")


@functools.lru_cache(maxsize=1)
def _torchvision_imports() -> bool:
    try:
        import torchvision  # noqa: F401
    except Exception:  # a torchvision built for another torch raises RuntimeError, not ImportError
        return False
    return True


def is_torchvision_available() -> bool:
    """True only when ``import torchvision`` works.

    ``transformers.utils.is_torchvision_available`` only checks that the package is installed, which is
    True for a torchvision wheel that does not match the installed torch and fails on import.
    """
    return _torchvision_imports()


# ---------------------------------------------------------------------------------------------------
# Image-only processors


def _public_class_name(cls: type) -> str:
    """The first class in the MRO that transformers itself exports (what AutoProcessor can resolve)."""
    import transformers

    for klass in cls.__mro__:
        if klass.__module__.startswith("transformers.") and getattr(transformers, klass.__name__, None) is klass:
            return klass.__name__
    return cls.__name__


def _video_processor_type(public_name: str) -> str | None:
    """The torchvision video processor class that stock ``public_name`` would load, if known."""
    if public_name in _QWEN_VIDEO_PROCESSORS:
        return _QWEN_VIDEO_PROCESSORS[public_name]
    # Without torchvision, transformers blanks these entries; the lookup only helps where it imports.
    from transformers.models.auto.processing_auto import PROCESSOR_MAPPING_NAMES
    from transformers.models.auto.video_processing_auto import VIDEO_PROCESSOR_MAPPING_NAMES

    for model_type, name in PROCESSOR_MAPPING_NAMES.items():
        if name == public_name and model_type in VIDEO_PROCESSOR_MAPPING_NAMES:
            entry = VIDEO_PROCESSOR_MAPPING_NAMES[model_type]
            return entry.get("torchvision") if isinstance(entry, dict) else entry
    return None


def _default_video_block(processor) -> dict[str, Any] | None:
    """A ``video_processor`` entry for processor_config.json, so stock AutoProcessor (which loads the
    video half too) finds a config whose geometry matches the image processor and the vision tower."""
    video_type = getattr(type(processor), "_qponder_video_processor_type", None)
    image_processor = getattr(processor, "image_processor", None)
    if video_type is None or image_processor is None:
        return None
    block: dict[str, Any] = {"video_processor_type": video_type}
    for key in ("patch_size", "temporal_patch_size", "merge_size", "image_mean", "image_std"):
        value = getattr(image_processor, key, None)
        if value is not None:
            block[key] = list(value) if isinstance(value, tuple) else value
    return block


class _ImageOnlySaveMixin:
    """Saves under the public class name, so the folder is not tied to qponder."""

    _qponder_public_name: str = ""
    _qponder_video_processor_type: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        d["processor_class"] = self._qponder_public_name
        block = _default_video_block(self)
        if block is not None:
            d.setdefault("video_processor", block)
        return d

    def save_pretrained(self, save_directory, push_to_hub: bool = False, **kwargs):
        # TRL's trainer.save_model calls processing_class.save_pretrained directly, so the fix-up has to
        # live here and not only in save_processor().
        files = super().save_pretrained(save_directory, push_to_hub=push_to_hub, **kwargs)
        _apply_save_caveats(self, save_directory)
        return files


_IMAGE_ONLY_CLASSES: dict[type, type] = {}


def _init_without_video(base: type, sig: inspect.Signature):
    """``base.__init__`` minus its ``video_processor`` parameter, as real Python code.

    It has to be real code, not ``*args, **kwargs`` with a ``__signature__``: ``get_attributes`` reads the
    signature, but ``from_args_and_dict`` reads ``__init__.__code__.co_varnames`` and silently drops every
    processor_config.json entry (the chat template included) that is not a named parameter.
    """
    params, call, star_done = [], [], False
    defaults: dict[str, Any] = {}
    for i, (name, p) in enumerate(sig.parameters.items()):
        if i == 0:
            params.append(name)  # self
            continue
        if name == "video_processor":
            continue
        if p.kind is p.VAR_POSITIONAL:
            params.append(f"*{name}")
            call.append(f"*{name}")
            star_done = True
        elif p.kind is p.VAR_KEYWORD:
            params.append(f"**{name}")
            call.append(f"**{name}")
        else:
            if p.kind is p.KEYWORD_ONLY and not star_done:
                params.append("*")
                star_done = True
            if p.default is p.empty:
                params.append(name)
            else:
                defaults[name] = p.default
                params.append(f"{name}=__defaults[{name!r}]")
            call.append(f"{name}={name}")
    self_name = next(iter(sig.parameters))
    src = (
        f"def __init__({', '.join(params)}):\n"
        f"    __base.__init__({self_name}, {', '.join(call + ['video_processor=None'])})\n"
    )
    namespace: dict[str, Any] = {"__base": base, "__defaults": defaults}
    exec(src, namespace)  # noqa: S102 - source built from a transformers signature, no user input
    return namespace["__init__"]


def image_only_processor_class(base: type) -> type:
    """A subclass of processor class ``base`` whose ``__init__`` has no ``video_processor`` parameter.

    Registered as a module attribute under its own name so instances pickle (datasets' fingerprinting
    and multiprocessing ``map`` pickle the processor).
    """
    if base in _IMAGE_ONLY_CLASSES:
        return _IMAGE_ONLY_CLASSES[base]
    sig = inspect.signature(base.__init__)
    if "video_processor" not in sig.parameters:
        raise TypeError(f"{base.__name__} has no video_processor to drop")
    __init__ = _init_without_video(base, sig)
    name = _IMAGE_ONLY_PREFIX + base.__name__
    public = _public_class_name(base)
    cls = type(
        name,
        (_ImageOnlySaveMixin, base),
        {
            "__init__": __init__,
            "__module__": __name__,
            "__qualname__": name,
            "__doc__": f"{base.__name__} without its torchvision-only video processor (images only).",
            "_qponder_public_name": public,
            "_qponder_video_processor_type": _video_processor_type(public),
        },
    )
    _IMAGE_ONLY_CLASSES[base] = cls
    setattr(sys.modules[__name__], name, cls)
    return cls


def _transformers_class(name: str) -> type | None:
    import transformers

    try:
        return getattr(transformers, name)
    except (AttributeError, ImportError, RuntimeError):
        return None


def __getattr__(name: str):
    # Lazy, so importing this module stays cheap (transformers' processing stack costs seconds), while
    # `from qponder.models.hf import ImageOnlyQwen2_5_VLProcessor` and unpickling by name still work.
    if name.startswith(_IMAGE_ONLY_PREFIX):
        base = _transformers_class(name[len(_IMAGE_ONLY_PREFIX):])
        if isinstance(base, type) and "video_processor" in inspect.signature(base.__init__).parameters:
            return image_only_processor_class(base)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ---------------------------------------------------------------------------------------------------
# Saving


def _rewrite_json(path: Path, update) -> None:
    if not path.is_file():
        return
    data = json.loads(path.read_text(encoding="utf-8"))
    if update(data):
        path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _apply_save_caveats(processor, out_dir) -> None:
    out = Path(out_dir)
    public = _public_class_name(type(processor))
    tokenizer = getattr(processor, "tokenizer", None)
    if tokenizer is not None and hasattr(tokenizer, "_set_processor_class"):
        # save_pretrained stamped the subclass name into the live tokenizer too; a later plain
        # tokenizer.save_pretrained would write it again.
        tokenizer._set_processor_class(public)

    def fix_processor_config(d: dict) -> bool:
        changed = d.get("processor_class") != public
        d["processor_class"] = public
        if getattr(processor, "video_processor", None) is None and "video_processor" not in d:
            block = _default_video_block(processor)
            if block is not None:
                d["video_processor"] = block
                changed = True
        return changed

    def fix_class_name(d: dict) -> bool:
        # A folder whose tokenizer_config names an unknown processor class was loaded by AutoProcessor
        # as a bare tokenizer, silently (stack.md section 2).
        if d.get("processor_class") in (None, public):
            return False
        d["processor_class"] = public
        return True

    _rewrite_json(out / "processor_config.json", fix_processor_config)
    _rewrite_json(out / "preprocessor_config.json", fix_class_name)
    _rewrite_json(out / "tokenizer_config.json", fix_class_name)


def save_processor(processor, out_dir) -> Path:
    """Save ``processor`` so that stock ``AutoProcessor`` reloads it in an environment with torchvision.

    Writes the public class name (e.g. ``Qwen2_5_VLProcessor``) into processor_config.json and
    tokenizer_config.json, and a default ``video_processor`` block when the processor was built without one.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    processor.save_pretrained(str(out))
    _apply_save_caveats(processor, out)
    return out


# ---------------------------------------------------------------------------------------------------
# Loading


def _looks_like_path(s: str) -> bool:
    # A hub id is "name" or "org/name"; anything else that is not an existing folder is a missing path.
    return (
        s.startswith((".", "/", "~", "\\"))
        or os.path.isabs(s)
        or s.count("/") > 1
        or "\\" in s
        or s.endswith("/")
    )


def looks_like_hub_id(s: str) -> bool:
    """``org/name`` that is not a local path: worth handing to the hub client."""
    return s.count("/") == 1 and not _looks_like_path(s) and not Path(s).expanduser().exists()


def _resolve(path_or_id: str) -> tuple[str, bool]:
    """(what to pass to from_pretrained, is it a local folder)."""
    s = str(path_or_id)
    if not s.strip():
        raise QPonderError("model path is empty: give a model folder or a hub id")
    p = Path(s).expanduser()
    if p.is_dir():
        if not (p / "config.json").is_file():
            raise QPonderError(f"{p} is not a model folder: it has no config.json")
        return str(p), True
    if p.exists():
        raise QPonderError(f"{p} is a file, not a model folder")
    if _looks_like_path(s):
        raise QPonderError(f"model folder {p} does not exist")
    return s, False


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 300 else text[:297] + "..."


def _hub_json(source: str, filename: str, local: bool) -> dict | None:
    if local:
        path = Path(source) / filename
        if not path.is_file():
            return None
    else:
        from transformers.utils import cached_file

        try:
            resolved = cached_file(
                source,
                filename,
                _raise_exceptions_for_missing_entries=False,
                _raise_exceptions_for_connection_errors=False,
            )
        except Exception:  # an unreachable hub is reported later, by the loader that needs the file
            return None
        if resolved is None:
            return None
        path = Path(resolved)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise QPonderError(f"{path} is not valid JSON: {_one_line(exc)}") from exc
    return data if isinstance(data, dict) else None


def _named_file_class(source: str, local: bool) -> str | None:
    for filename in _PROCESSOR_FILES:
        name = (_hub_json(source, filename, local) or {}).get("processor_class")
        if isinstance(name, str):
            return name
    return None


def _processor_class_name(named: str | None, model_type: str | None) -> str | None:
    """The transformers processor class for a folder whose files name ``named`` (or nothing)."""
    if named is not None:
        # Folders saved from an image-only subclass without the save caveats name the subclass.
        if named.startswith(_IMAGE_ONLY_PREFIX) and _transformers_class(named[len(_IMAGE_ONLY_PREFIX):]):
            return named[len(_IMAGE_ONLY_PREFIX):]
        return named
    if model_type:
        from transformers.models.auto.processing_auto import PROCESSOR_MAPPING_NAMES

        return PROCESSOR_MAPPING_NAMES.get(model_type)
    return None


def _is_video_or_torchvision_error(exc: BaseException) -> bool:
    text = f"{type(exc).__name__} {exc}".lower()
    return any(k in text for k in ("torchvision", "video_processor", "video processor", "videoprocessor"))


def _load_image_only(base: type, source: str, common: dict) -> Any:
    from transformers import AutoImageProcessor, AutoTokenizer

    cls = image_only_processor_class(base)
    if cls.get_attributes() != ["image_processor", "tokenizer"]:
        return cls.from_pretrained(source, **common)
    # Built from its parts rather than cls.from_pretrained so the image processor can be pinned to the
    # PIL backend: the auto backend picks torchvision whenever it is *installed*, even when it does not
    # import, and `backend` cannot go through from_pretrained (it would reach the tokenizer too).
    processor_dict, extra = cls.get_processor_dict(source, **common)
    image_processor = AutoImageProcessor.from_pretrained(source, backend="pil", **common)
    tokenizer = AutoTokenizer.from_pretrained(source, **common)
    extra.pop("trust_remote_code", None)
    return cls.from_args_and_dict([image_processor, tokenizer], processor_dict, **extra)


def _load_processor(source: str, local: bool, config, trust_remote_code: bool) -> Any:
    from transformers import AutoProcessor

    common = {"trust_remote_code": trust_remote_code, "local_files_only": local}
    named = _named_file_class(source, local)
    name = _processor_class_name(named, getattr(config, "model_type", None))
    base = _transformers_class(name) if name else None
    if is_torchvision_available():
        # A folder saved without the save caveats names qponder's subclass, which stock AutoProcessor
        # cannot resolve and turns into a bare tokenizer; load the public class it stands for instead.
        from_subclass = (named or "").startswith(_IMAGE_ONLY_PREFIX) and base is not None
        loader = base if from_subclass else AutoProcessor
        try:
            return loader.from_pretrained(source, **common)
        except Exception as exc:
            raise QPonderError(f"cannot load the processor of {source}: {_one_line(exc)}") from exc

    if base is not None and name in _QWEN_PROCESSORS:
        try:
            return _load_image_only(base, source, common)
        except QPonderError:
            raise
        except Exception as exc:
            raise QPonderError(f"cannot load the image-only {name} of {source}: {_one_line(exc)}") from exc

    try:
        return AutoProcessor.from_pretrained(source, **common)
    except Exception as exc:
        if not _is_video_or_torchvision_error(exc):
            raise QPonderError(f"cannot load the processor of {source}: {_one_line(exc)}") from exc
        first = exc
    needs_tv = QPonderError(
        f"the processor of {source} ({name or 'unknown class'}) needs torchvision, which does not import here"
    )
    if base is None or "video_processor" not in inspect.signature(base.__init__).parameters:
        raise needs_tv from first
    try:
        return _load_image_only(base, source, common)
    except Exception as exc:
        raise needs_tv from exc


def _model_class(config, trust_remote_code: bool):
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText

    candidates = [AutoModelForImageTextToText]
    try:  # removed in some transformers versions; kept as a fallback where it exists
        from transformers import AutoModelForVision2Seq

        candidates.append(AutoModelForVision2Seq)
    except ImportError:
        pass
    candidates.append(AutoModelForCausalLM)
    auto_map = getattr(config, "auto_map", None) or {}
    for auto_cls in candidates:
        if type(config) in auto_cls._model_mapping:
            return auto_cls
        if trust_remote_code and auto_cls.__name__ in auto_map:
            return auto_cls
    return None


def _has_chat_template(processor) -> bool:
    if getattr(processor, "chat_template", None):
        return True
    tokenizer = getattr(processor, "tokenizer", processor)
    return bool(getattr(tokenizer, "chat_template", None))


def load_hf(path_or_id: str | os.PathLike, trust_remote_code: bool = False, dtype=None, device=None):
    """Load a VLM with a chat template from a local folder or a hub id; return ``(model, processor)``.

    Local folders never touch the network. Remote code runs only with ``trust_remote_code=True``.
    ``dtype``: a ``torch.dtype``, its name (``"bfloat16"``) or ``"auto"``; None keeps transformers' default.
    """
    from transformers import AutoConfig

    source, local = _resolve(path_or_id)
    # Always an explicit bool: None would make transformers prompt on a terminal for remote code.
    trust_remote_code = bool(trust_remote_code)
    common = {"trust_remote_code": trust_remote_code, "local_files_only": local}
    try:
        config = AutoConfig.from_pretrained(source, **common)
    except Exception as exc:
        if not trust_remote_code and "trust_remote_code" in str(exc):
            raise QPonderError(
                f"{source} needs its own Python code (auto_map in config.json), which runs only with "
                "trust_remote_code=True; inspect that code before allowing it"
            ) from exc
        if local:
            raise QPonderError(f"cannot read the config of model folder {source}: {_one_line(exc)}") from exc
        raise QPonderError(
            f"{source!r} is not a folder here and could not be loaded as a hub id: {_one_line(exc)}"
        ) from exc

    auto_cls = _model_class(config, trust_remote_code)
    if auto_cls is None:
        raise QPonderError(
            f"{source} ({getattr(config, 'model_type', '?')}) is not an image-text-to-text model that "
            "transformers can load"
        )
    processor = _load_processor(source, local, config, trust_remote_code)
    from transformers import PreTrainedTokenizerBase

    if auto_cls.__name__ != "AutoModelForCausalLM" and isinstance(processor, PreTrainedTokenizerBase):
        raise QPonderError(
            f"the processor of {source} loaded as a bare tokenizer (no image processor); check processor_class "
            "in its processor_config.json / tokenizer_config.json"
        )
    if not _has_chat_template(processor):
        raise QPonderError(f"{source} has no chat template; qponder builds every prompt with apply_chat_template")

    kwargs = dict(common)
    if dtype is not None:
        kwargs["dtype"] = dtype
    try:
        model = auto_cls.from_pretrained(source, **kwargs)
    except Exception as exc:
        raise QPonderError(f"cannot load the model weights of {source}: {_one_line(exc)}") from exc
    if device is not None:
        model = model.to(device)
    model.eval()
    return model, processor


__all__ = ["image_only_processor_class", "is_torchvision_available", "load_hf", "save_processor"]
