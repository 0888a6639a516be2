"""Reuse a frozen vision tower's features per image, within a process.

With the tower frozen (every recipe's default), its output for an image never changes, yet the trainers and
the evaluator run it again and again: the SFT data loader shows each kept image about three times in 300
steps, GRPO runs the tower for every rollout of an image in generation, in the reference model and in the
policy's forward, and the evaluator once per model for towers that all models share. On the 2-core CPU the
tower costs about 0.03 s per image; reusing it saved 10-15 % of each training and evaluation stage of the
demo, with the same results to the digit (docs/results.md, stop 12). ``cache_frozen_tower`` makes a
model's tower look its images up first. Entries are keyed by the tower's weights and the image's exact pixels,
so two models with the same frozen tower (SFT, GRPO's reference, every model in an evaluation) share them, and
a tower with other weights never sees another's features.

It only answers where the answer is certain to be the same: a LLaVA-style tower (the one ``vision_tower``,
called on a pixel batch, read through ``hidden_states``), called without autograd through its weights, without
active dropout and without adapters. Anything else runs as before. The trainers and the evaluator turn it on;
a plain ``Scorer`` does not, since photos scored once would only fill memory. ``QPONDER_TOWER_CACHE_MB`` sets
the memory it may hold (default 2048; 0 turns it off); the oldest entries go first.
"""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict

_DEFAULT_MB = 2048


class FeatureCache:
    """An LRU map ((tower fingerprint, layers read), image digest) -> those hidden states for that image."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self._items: OrderedDict[tuple, tuple] = OrderedDict()

    def get(self, key):
        item = self._items.get(key)
        if item is not None:
            self._items.move_to_end(key)
            self.hits += 1
        return item

    def put(self, key, tensors: tuple) -> None:
        size = sum(t.numel() * t.element_size() for t in tensors)
        if size > self.max_bytes:
            return
        old = self._items.pop(key, None)
        if old is not None:
            self.bytes -= sum(t.numel() * t.element_size() for t in old)
        self._items[key] = tensors
        self.bytes += size
        while self.bytes > self.max_bytes:
            _, dropped = self._items.popitem(last=False)
            self.bytes -= sum(t.numel() * t.element_size() for t in dropped)

    def __len__(self) -> int:
        return len(self._items)


_CACHE: FeatureCache | None = None


def shared_cache() -> FeatureCache | None:
    """The process's cache, or None when ``QPONDER_TOWER_CACHE_MB`` is 0."""
    global _CACHE
    value = os.environ.get("QPONDER_TOWER_CACHE_MB", str(_DEFAULT_MB))
    try:
        mb = int(value)
    except ValueError:
        from qponder.errors import QPonderError

        raise QPonderError(f"QPONDER_TOWER_CACHE_MB={value!r}: expected a whole number of megabytes (0 turns the "
                           "tower cache off)") from None
    if mb <= 0:
        return None
    if _CACHE is None or _CACHE.max_bytes != mb << 20:
        _CACHE = FeatureCache(mb << 20)
    return _CACHE


def _digest(t) -> bytes:
    import torch

    raw = t.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8)  # the bytes, whatever the dtype (bf16 too)
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{t.dtype}{tuple(t.shape)}".encode())
    h.update(raw.numpy().data)
    return h.digest()


def _fingerprint(tower) -> bytes:
    h = hashlib.blake2b(digest_size=16)
    h.update(type(tower).__name__.encode())
    for name, p in tower.state_dict().items():
        h.update(name.encode())
        h.update(_digest(p))
    return h.digest()


def _reusable(tower) -> bool:
    """Whether this call's answer can only be the stored one: no gradient wanted from the tower, no dropout."""
    import torch

    if torch.is_grad_enabled() and any(p.requires_grad for p in tower.parameters()):
        return False
    return not any(isinstance(m, torch.nn.Dropout) and m.p > 0 and m.training for m in tower.modules())


class _Fingerprint:
    """The tower's weights as a digest, recomputed only when a weight was written in place (a checkpoint loaded),
    which torch's per-tensor version counters tell without reading the weights."""

    def __init__(self, tower):
        self.tower = tower
        self.versions = None
        self.digest = b""

    def __call__(self) -> bytes:
        versions = [(id(t), t._version) for t in self.tower.state_dict(keep_vars=True).values()]
        if versions != self.versions:
            self.versions, self.digest = versions, _fingerprint(self.tower)
        return self.digest


def _llava_like(model, depth: int = 4):
    """The module holding ``vision_tower`` and ``multi_modal_projector`` (through PEFT and *ForConditionalGeneration
    wrappers), or None."""
    if hasattr(model, "get_base_model"):
        model = model.get_base_model()
    for _ in range(depth):
        if hasattr(model, "vision_tower") and hasattr(model, "multi_modal_projector"):
            return model if hasattr(model, "config") else None
        model = getattr(model, "model", None)
        if model is None:
            return None
    return None


def cache_frozen_tower(model, cache: FeatureCache | None = None) -> bool:
    """Make ``model``'s vision tower reuse its features per image; True when it does (see the module doc).

    A call that needs the tower's gradient (a trainable tower with autograd on) or runs active dropout is not
    served from the cache; nor is a tower with adapters, which GRPO may switch off for its reference.
    """
    cache = cache if cache is not None else shared_cache()
    inner = _llava_like(model)
    if cache is None or inner is None:
        return False
    tower, config = inner.vision_tower, inner.config
    if getattr(tower, "_qponder_cached", False):
        return True
    if any("lora_" in name for name, _ in tower.named_parameters()):  # an adapter can be switched off (GRPO's reference)
        return False
    layers = config.vision_feature_layer
    layers = [layers] if isinstance(layers, int) else list(layers)
    n_states = tower.config.num_hidden_layers + 1
    layers = sorted({i % n_states for i in layers})
    fingerprint = _Fingerprint(tower)
    original = tower.forward

    def forward(pixel_values=None, *args, **kwargs):
        import torch
        from transformers.modeling_outputs import BaseModelOutputWithPooling

        extra = [k for k, v in kwargs.items()
                 if v is not None and v is not False and k not in ("return_dict", "output_hidden_states")]
        if args or extra or pixel_values is None or pixel_values.dim() != 4 or not _reusable(tower):
            return original(pixel_values, *args, **kwargs)  # a call this cache was not built for
        # the layers belong in the key: two models may read the same frozen tower at different depths; so does
        # autocast, whose bf16 features must not reach an fp32 pass of the same tower in the same process
        device = pixel_values.device.type
        cast = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else None
        weights = (fingerprint(), tuple(layers), cast)
        keys = [(weights, _digest(img)) for img in pixel_values]
        found = [cache.get(k) for k in keys]
        todo = {keys[i]: i for i, f in enumerate(found) if f is None}  # GRPO repeats each image once per rollout
        if todo:
            cache.misses += len(todo)
            with torch.no_grad():
                out = original(pixel_values[list(todo.values())], output_hidden_states=True, return_dict=True)
            computed = {key: tuple(out.hidden_states[layer][j].clone() for layer in layers)
                        for j, key in enumerate(todo)}
            for key, value in computed.items():
                cache.put(key, value)
            found = [computed[k] if f is None else f for k, f in zip(keys, found)]
        states: list = [None] * n_states
        for k, layer in enumerate(layers):
            states[layer] = torch.stack([f[k] for f in found])
        # get_image_features reads only hidden_states[vision_feature_layer]: the rest stays None, never a guess
        return BaseModelOutputWithPooling(last_hidden_state=None, hidden_states=tuple(states))

    tower.forward = forward
    tower._qponder_cached = True
    return True
