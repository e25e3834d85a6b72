"""A checkpoint's ``config.json``, from a stranger, checked by the rules of ``--config``.

``checkpoint.read_config`` parses the JSON within its size and depth bounds and then
calls :func:`check_saved`: only the groups and fields a training config has, each of
its default's type, values within what :func:`shiftnet_jax.config.validate` accepts.
"""

from __future__ import annotations

import math

import ml_collections

from shiftnet_jax import config as configlib

MAX_SAVED_DEPTH = 4       # groups in groups: {"model": {...}} is 2, a list in a group 3
MAX_SAVED_TEXT = 4096     # characters of one text value
EXTRA_MODEL_FIELDS = ("shift_tile",)   # generator arguments that are not training fields


def _saved_value(key: str, value, default):
    """``value`` (from JSON) checked against the type of ``default``; returns it as that type."""
    def bad(kind):
        return configlib.ConfigError(f"config field {key!r} takes {kind}, got {_short(value)}")
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise bad("true or false")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad("an integer")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise bad("a finite number")
        return float(value)
    if isinstance(default, str):
        if not isinstance(value, str) or len(value) > MAX_SAVED_TEXT:
            raise bad(f"text (at most {MAX_SAVED_TEXT} characters)")
        return value
    if isinstance(default, (tuple, list)):
        if not isinstance(value, (list, tuple)) or len(value) > 64 or not all(
                isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in value):
            raise bad("a list of at most 64 numbers or texts")
        return tuple(value)
    raise bad(type(default).__name__)


def _short(value) -> str:
    text = repr(value) if not isinstance(value, (dict, list)) else type(value).__name__
    return text if len(text) <= 60 else text[:57] + "..."


def check_saved(raw, where: str = "config.json") -> ml_collections.ConfigDict:
    """A checkpoint's config (parsed JSON, from a stranger) checked by the rules of ``--config``:
    a dict; the groups and fields of ``config.default_config`` only (with ``model.shift_tile``),
    each of its default's type; then ``config.validate`` without the paths. Top-level fields
    that are not training fields (``step``, ``source``, ``trained_steps``...) must be plain
    values. Returns the merged config; raises :class:`~shiftnet_jax.config.ConfigError` naming ``where``."""
    try:
        return _check_saved(raw)
    except configlib.ConfigError as e:
        raise configlib.ConfigError(f"{where}: {e}") from None


def _check_saved(raw) -> ml_collections.ConfigDict:
    if not isinstance(raw, dict):
        raise configlib.ConfigError(f"must be a JSON object, got {type(raw).__name__}")
    config = configlib.default_config()
    paths = configlib.field_paths(config)
    for group, value in raw.items():
        if not isinstance(group, str) or group not in config:
            if isinstance(value, (dict, list)):
                raise configlib.ConfigError(f"unknown config group {_short(group)}{configlib.suggest(str(group), paths)}")
            if isinstance(value, str) and len(value) > MAX_SAVED_TEXT:
                raise configlib.ConfigError(f"field {_short(group)} is longer than {MAX_SAVED_TEXT} characters")
            continue  # metadata beside the config (step, source, trained_steps...)
        default = config[group]
        if not isinstance(default, ml_collections.ConfigDict):
            config[group] = _saved_value(group, value, default)
            continue
        if not isinstance(value, dict):
            raise configlib.ConfigError(f"config group {group!r} must be a JSON object, got {_short(value)}")
        for key, item in value.items():
            dotted = f"{group}.{key}"
            if group == "model" and key in EXTRA_MODEL_FIELDS:
                if item is not None and (isinstance(item, bool) or not isinstance(item, int) or item < 1):
                    raise configlib.ConfigError(f"config field {dotted!r} takes an integer >= 1 or null, "
                                      f"got {_short(item)}")
                continue
            if key not in default:
                raise configlib.ConfigError(f"unknown config field {_short(dotted)}{configlib.suggest(dotted, paths)}")
            if isinstance(default[key], ml_collections.ConfigDict):
                raise configlib.ConfigError(f"config field {dotted!r} is not a group")
            default[key] = _saved_value(dotted, item, default[key])
    return configlib.validate(config, check_paths=False)
