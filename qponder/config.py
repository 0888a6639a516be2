"""Recipes: dataclass configs loaded from YAML, with command-line overrides.

Precedence: dataclass defaults < recipe file < ``--set key=value`` < dedicated CLI options. A key the
dataclass does not have is an error naming the file (or the option), so a typo never silently does nothing.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from qponder.errors import QPonderError

T = TypeVar("T")


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Turn a YAML or command-line value into the field's type (strings from --set need this)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            return None
        for a in args:
            try:
                return _coerce(value, a, where)
            except QPonderError:
                continue
        raise QPonderError(f"{where}: {value!r} does not fit {hint}")
    if origin in (list, tuple):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        (inner, *_) = typing.get_args(hint) or (Any,)
        items = [_coerce(v, inner, where) for v in value]
        return items if origin is list else tuple(items)
    if origin is dict:
        if isinstance(value, str):
            value = yaml.safe_load(value)
        if not isinstance(value, dict):
            raise QPonderError(f"{where}: expected a mapping, got {value!r}")
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("1", "true", "yes", "on"):
            return True
        if str(value).lower() in ("0", "false", "no", "off"):
            return False
        raise QPonderError(f"{where}: {value!r} is not a boolean")
    if hint in (int, float, str):
        try:
            if hint is int and isinstance(value, float) and not value.is_integer():
                raise ValueError
            return hint(value)
        except (TypeError, ValueError):
            raise QPonderError(f"{where}: {value!r} is not a valid {hint.__name__}") from None
    return value


def typed(cls: type, mapping: dict, where: str) -> dict:
    """``mapping``'s values turned into ``cls``'s field types, as a recipe file's would be (keys must be fields)."""
    hints = typing.get_type_hints(cls)
    return {k: _coerce(v, hints[k], f"{where}: {k}") for k, v in mapping.items()}


def build(cls: type[T], path: str | Path | None = None, overrides: list[str] | None = None,
          **options: Any) -> T:
    """Build a recipe dataclass from a YAML file, ``key=value`` overrides and explicit options (None = unset)."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}

    def put(key: str, value: Any, where: str) -> None:
        if key not in names:
            raise QPonderError(f"{where}: unknown key {key!r}; valid keys: {', '.join(sorted(names))}")
        values[key] = _coerce(value, hints[key], f"{where}: {key}")

    if path is not None:
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except FileNotFoundError:
            raise QPonderError(f"{path}: recipe not found") from None
        except yaml.YAMLError as e:
            raise QPonderError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
        if not isinstance(data, dict):
            raise QPonderError(f"{path}: a recipe must be a mapping of key: value")
        for k, v in data.items():
            put(k, v, str(path))
    for item in overrides or []:
        if "=" not in item:
            raise QPonderError(f"--set {item!r}: expected key=value")
        k, v = (x.strip() for x in item.split("=", 1))
        value = yaml.safe_load(v) if v else v
        head, dot, sub = k.partition(".")
        if dot:  # one key inside a mapping field: --set distill.diagnosis_first=true
            fld = next((f for f in dataclasses.fields(cls) if f.name == head), None)
            if fld is None or hints[head] is not dict and typing.get_origin(hints[head]) is not dict:
                raise QPonderError(f"--set {k}: {head!r} is not a mapping section of {cls.__name__}")
            base = values.get(head)
            if base is None:
                has_factory = fld.default_factory is not dataclasses.MISSING
                base = fld.default_factory() if has_factory else dict(fld.default or {})
            value, k = {**base, sub: value}, head
        put(k, value, f"--set {k}")
    for k, v in options.items():
        if v is not None:
            put(k, v, f"--{k.replace('_', '-')}")
    try:
        return cls(**values)
    except TypeError as e:
        raise QPonderError(f"{cls.__name__}: {e}") from None


def dump(recipe: Any, path: str | Path) -> Path:
    """Write the effective recipe next to a run's outputs, so the run can be reproduced."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(dataclasses.asdict(recipe), sort_keys=False))
    return path
