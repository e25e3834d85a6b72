"""Training configs: the defaults, loading ``configs/*.py``, command-line overrides, checks.

``configs/*.py`` define ``get_config()`` returning an ``ml_collections.ConfigDict``
built on :func:`default_config`. Any field can be overridden on the command
line, ``--config.optim.lr=1e-4``; :func:`apply_overrides` converts the text to
the field's type, and :func:`validate` checks values against what they accept.
Every problem is a :class:`ConfigError` whose message is one line.
"""

from __future__ import annotations

import ast
import difflib
import importlib.util
import os
from pathlib import Path

import ml_collections

from shiftnet_jax.data import loader, masks, sources
from shiftnet_jax.errors import UserError, first_line
from shiftnet_jax.nets import feature_hole, shift_level
from shiftnet_jax.nets.conv import IMPLS
from shiftnet_jax.nets.generator import size_multiple
from shiftnet_jax.nets.layers import NORMS
from shiftnet_jax.train import losses, official_schedule
from shiftnet_jax.train.official_options import INIT_TYPES

_DTYPES = ("float32", "bfloat16")


class ConfigError(UserError):
    """A config file, field or value that cannot be used; the message is one line."""


def default_config() -> ml_collections.ConfigDict:
    """The paper's setting (Sec. 4): Adam 2e-4, beta1 0.5, batch 1, 30 epochs, loss
    weights L1 1, guidance 0.01, adversarial 0.002, 256x256 crops of images whose
    shorter side is 350, horizontal flips, a 128x128 centre hole."""
    c = ml_collections.ConfigDict()
    c.name = "shiftnet"
    c.seed = 0

    c.model = ml_collections.ConfigDict(dict(
        ngf=64, num_downs=8, norm="instance", shift_layer=3, feature_hole="nearest",
        output_channels=3, conv_impl="auto"))
    # The shift level's options and defaults (variant "shift" = the official default
    # unet_shift_triple, shift_sz 1, mask_thred 1, fuse 0, stride 1; patch_order: ours, soft
    # variants only; flip_fill: ours, face only): declared once, in shiftnet_jax.nets.shift_level.ShiftOptions.
    c.model.update(shift_level.SHIFT_DEFAULTS)
    c.model.add_mask2input = True   # official --add_mask2input 1: the known-pixel channel
    c.model.spectral_norm = False   # official --use_spectral_norm_G 0
    c.discriminator = ml_collections.ConfigDict(dict(
        ndf=64, n_layers=3, spectral_norm=True, norm="instance"))
    # official --which_model_netD: basic (= "patchgan") or "densenet" (DenseNet-121 body,
    # BatchNorm, ignores ndf/n_layers/norm; random weights: ImageNet ones are a download)
    c.discriminator.kind = "patchgan"

    c.data = ml_collections.ConfigDict(dict(
        source="sample", dir="", name="", classes=(), train_split="train",
        eval_split="test", cache_dir="", load_size=350, crop_size=256,
        # "kind" or "kind:option=value,...", e.g. "center", "rect:min_size=32,max_size=128",
        # "island", "strokes", "mix"; see shiftnet_jax.data.masks.make_mask_fn.
        mask="center:hole=128", num_workers=0, prefetch=2,
        # worker processes ("auto": for training with >= 2 workers) or threads; num_workers 0 = the cores
        backend="auto",
        scale_range=()))   # (lo, hi): training resizes to load_size * U(lo, hi); () = no scaling

    c.loss = ml_collections.ConfigDict(dict(
        l1=1.0, guidance=0.01, adversarial=0.002, gan="vanilla",
        adversarial_start=0))   # steps of reconstruction-only warm-up before the GAN term
    # WGAN-GP's penalty weight (official --gp_lambda, default 10; used with gan="wgan_gp").
    c.loss.gp_lambda = 10.0
    # The official code's extra terms, weights relative to loss.l1 = 1 (its lambda_A = 100):
    # hole_l1 = mask_weight_G / 100 (official 400 -> 4; the paper: none), discounting
    # (official 1), tv = tv_weight / 100 (official 0), guidance_kind = constrain (MSE).
    c.loss.update(dict(hole_l1=0.0, discounting=True, tv=0.0, guidance_kind="mse"))
    # VGG16 style and content (official style_weight 10 -> 0.1, content_weight 1 -> 0.01;
    # the paper: none); vgg16: path of a torchvision vgg16 state dict (no download).
    c.loss.update(dict(style=0.0, content=0.0, vgg16=""))
    c.optim = ml_collections.ConfigDict(dict(
        lr=2e-4, b1=0.5, b2=0.999,
        schedule="constant"))   # or "cosine": decay to 0 at the last step

    c.batch_size = 1          # global, over all devices and hosts
    c.num_epochs = 30.0       # used when num_steps is 0
    c.num_steps = 0
    c.compute_dtype = "float32"   # "bfloat16": bf16 compute, f32 params and optimiser

    c.log_every = 50
    c.sample_every = 1000
    c.checkpoint_every = 2000
    c.keep_checkpoints = 3
    c.eval_batches = 8        # test batches evaluated at the end of training
    c.eval_every = 0          # also evaluate every N steps (0: only at the end)
    c.distributed = False     # jax.distributed.initialize() from JAX_COORDINATOR_ADDRESS & co.
    # "official": train with the official code's step, as it is (docs/official-mode.md).
    c.compat = ""
    # Official options without a counterpart of ours, by their official names; read with
    # compat "official" only. lr_policy (lambda, step, cosine; "" = the constant optim.lr)
    # per epoch with niter, niter_decay, lr_decay_iters, epoch_count
    # (shiftnet_jax/train/official_schedule.py); fresh weights drawn as init_type (normal,
    # xavier, kaiming, orthogonal) with init_gain (shiftnet_jax/train/official_init.py).
    c.official = ml_collections.ConfigDict(dict(
        lr_policy="", niter=30, niter_decay=0, lr_decay_iters=50, epoch_count=1,
        init_type="normal", init_gain=0.02))
    return c


# ------------------------------------------------------------------ loading
def load_config(path) -> ml_collections.ConfigDict:
    """Run ``path``'s ``get_config()``; a missing or broken file is a one-line error."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path}: no such file")
    spec = importlib.util.spec_from_file_location(f"_shiftnet_config_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
        config = module.get_config()
    except Exception as e:  # a user's file: any error becomes one line naming it
        raise ConfigError(f"config file {path}: {type(e).__name__}: {first_line(e)}") from None
    if not isinstance(config, ml_collections.ConfigDict):
        raise ConfigError(f"config file {path}: get_config() must return an ml_collections.ConfigDict")
    return config


def field_paths(config, prefix: str = "") -> list[str]:
    """Every leaf field as a dotted path, e.g. ``["batch_size", "data.mask", ...]``."""
    paths = []
    for key, value in config.items():
        if isinstance(value, ml_collections.ConfigDict):
            paths += field_paths(value, f"{prefix}{key}.")
        else:
            paths.append(prefix + key)
    return paths


def suggest(key: str, paths: list[str]) -> str:
    """' (did you mean a or b?)' for the fields nearest to ``key``, or ''."""
    leaf = key.rpartition(".")[2]
    near = difflib.get_close_matches(key, paths, n=3, cutoff=0.6)
    near += [p for p in paths if p not in near and (
        leaf in p.rpartition(".")[2] or difflib.get_close_matches(leaf, [p.rpartition(".")[2]], cutoff=0.75))]
    if near:
        return f" (did you mean {' or '.join(near[:3])}?)"
    group = key.rpartition(".")[0]
    siblings = [p for p in paths if p.rpartition(".")[0] == group]
    if group and siblings:
        return f" (the fields of {group}: {', '.join(p.rpartition('.')[2] for p in siblings)})"
    return ""


# ---------------------------------------------------------------- overrides
def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true or false")


def _convert(text: str, current):
    """``text`` as a value of the type of ``current``."""
    if isinstance(current, bool):
        return _parse_bool(text)
    if isinstance(current, int):
        return int(text.strip())
    if isinstance(current, float):
        return float(text.strip())
    if isinstance(current, str):
        return text
    if isinstance(current, (tuple, list)):
        stripped = text.strip()
        if stripped.startswith(("(", "[")):
            items = ast.literal_eval(stripped)
        else:
            items = [t.strip() for t in stripped.split(",") if t.strip()]
        if current:
            kind = type(current[0])
            return tuple(str(t) if kind is str else _convert(str(t), kind()) for t in items)
        return tuple(_literal_or_text(str(t)) for t in items)
    return _literal_or_text(text)  # None or another type


def _literal_or_text(text: str):
    """A Python literal (number, tuple, None, ...) if ``text`` is one, else the text."""
    try:
        return ast.literal_eval(text.strip())
    except (ValueError, SyntaxError):
        return text


def _type_name(value) -> str:
    names = {bool: "true or false", int: "an integer", float: "a number", str: "text"}
    if isinstance(value, (tuple, list)):
        return "a comma-separated list"
    return names.get(type(value), type(value).__name__)


def apply_override(config, key: str, text: str):
    """Set dotted field ``key`` of ``config`` from command-line ``text``, typed like its default."""
    paths = field_paths(config)
    node, parts = config, key.split(".")
    for i, part in enumerate(parts):
        if not isinstance(node, ml_collections.ConfigDict) or part not in node:
            raise ConfigError(f"unknown config field {key!r}{suggest(key, paths)}")
        if i < len(parts) - 1:
            node = node[part]
    current = node[parts[-1]]
    if isinstance(current, ml_collections.ConfigDict):
        fields = ", ".join(field_paths(current, key + "."))
        raise ConfigError(f"config field {key!r} is a group; set one of its fields: {fields}")
    try:
        value = _convert(text, current)
    except (ValueError, SyntaxError):
        raise ConfigError(f"config field {key!r} takes {_type_name(current)}, got {text!r}") from None
    node[parts[-1]] = value


def apply_overrides(config, overrides: list[tuple[str, str]]):
    """Apply ``[(dotted key, text), ...]`` in order; returns ``config``."""
    for key, text in overrides:
        apply_override(config, key, text)
    return config


# --------------------------------------------------------------- validation
def _choice(config, key, choices):
    value = _get(config, key)
    if value not in choices:
        raise ConfigError(f"config field {key!r} must be one of {', '.join(map(str, choices))}; got {value!r}")


def _at_least(config, key, minimum):
    value = _get(config, key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum:
        raise ConfigError(f"config field {key!r} must be a number >= {minimum}; got {value!r}")


def _get(config, key):
    node = config
    for part in key.split("."):
        node = node[part]
    return node


def mask_spec(config):
    """``config.data.mask`` as :func:`shiftnet_jax.data.masks.make_mask_fn` takes it."""
    spec = config.data.mask
    return spec.to_dict() if hasattr(spec, "to_dict") else spec


# Upper bounds of the sizes (far above any real run: the paper's ngf 64, num_downs 8, crop 256);
# a config, or a stranger's checkpoint folder, asking for more is refused before anything is built.
MAX_SIZES = {"model.ngf": 1024, "model.num_downs": 10, "model.output_channels": 16,
             "discriminator.ndf": 1024, "discriminator.n_layers": 12, "data.crop_size": 2048,
             "data.load_size": 16384}


def _at_most(config, key, maximum):
    value = _get(config, key)
    if value > maximum:
        raise ConfigError(f"config field {key!r} must be <= {maximum}; got {value!r}")


def _check_official_fields(config):
    """The group ``official`` (learning-rate policy, initialisation): compat "official" only."""
    _choice(config, "official.lr_policy", ("",) + official_schedule.POLICIES)
    _choice(config, "official.init_type", INIT_TYPES)
    for key in ("official.niter", "official.lr_decay_iters", "official.epoch_count"):
        _at_least(config, key, 1)
    _at_least(config, "official.niter_decay", 0)
    _at_least(config, "official.init_gain", 0)
    o = config.official
    if config.compat != "official" and (o.lr_policy or (o.init_type, o.init_gain) != ("normal", 0.02)):
        raise ConfigError("config group 'official' is read with compat 'official' only (ours: "
                          "optim.schedule; our weights start as its default init_type normal, "
                          "init_gain 0.02)")
    if not o.lr_policy:
        return
    if o.lr_policy == "plateau":
        raise ConfigError(official_schedule.PLATEAU)
    if config.optim.schedule != "constant":
        raise ConfigError(f"config fields 'official.lr_policy' ({o.lr_policy!r}) and 'optim.schedule' "
                          f"({config.optim.schedule!r}) are two schedules; keep schedule 'constant'")
    epochs = official_schedule.epochs_trained(o)
    if not config.num_steps and config.num_epochs != epochs:
        raise ConfigError(f"official.lr_policy {o.lr_policy!r}: the official code trains niter + "
                          f"niter_decay + 1 - epoch_count = {epochs} epochs; set num_epochs to "
                          f"{epochs} (got {config.num_epochs:g}), or num_steps")


def validate(config, check_paths: bool = True):
    """Check every value the training run will use; raise :class:`ConfigError` on the first bad one.

    ``check_paths=False`` leaves out what names files (data.dir, loss.vgg16, mask folders): a
    checkpoint's config describes the machine it was trained on."""
    _choice(config, "model.norm", NORMS)
    _choice(config, "model.feature_hole", feature_hole.RULES)
    _choice(config, "model.conv_impl", IMPLS)
    try:
        options = shift_level.ShiftOptions(**shift_level.shift_options(config.model))
        options.check_shift_options(config.model.shift_layer)
    except ValueError as e:
        raise ConfigError(f"config field 'model': {first_line(e)}") from None
    _choice(config, "discriminator.norm", NORMS)
    _choice(config, "discriminator.kind", ("patchgan", "densenet"))
    _choice(config, "loss.gan", losses.GANS)
    _choice(config, "loss.guidance_kind", losses.GUIDANCE_KINDS)
    _choice(config, "compute_dtype", _DTYPES)
    _choice(config, "compat", ("", "official"))
    _choice(config, "data.source", sources.SOURCES)
    _choice(config, "data.backend", loader.BACKENDS)
    _choice(config, "optim.schedule", ("constant", "cosine"))
    scale = tuple(config.data.scale_range)
    if scale and not (len(scale) == 2 and 0 < scale[0] <= scale[1]):
        raise ConfigError(f"config field 'data.scale_range' must be two numbers 0 < lo <= hi, or empty; got {scale!r}")
    for key in ("model.ngf", "model.num_downs", "model.output_channels", "discriminator.ndf",
                "discriminator.n_layers", "data.crop_size", "batch_size", "log_every",
                "keep_checkpoints"):
        _at_least(config, key, 1)
    for key in ("num_steps", "sample_every", "checkpoint_every", "eval_batches", "eval_every",
                "loss.adversarial_start", "data.load_size",
                "data.num_workers", "data.prefetch", "optim.lr", "loss.l1", "loss.guidance",
                "loss.adversarial", "loss.gp_lambda", "loss.hole_l1", "loss.tv", "loss.style",
                "loss.content"):
        _at_least(config, key, 0)
    for key, maximum in MAX_SIZES.items():
        _at_most(config, key, maximum)
    if check_paths and (config.loss.style or config.loss.content) and not os.path.isfile(
            os.path.expanduser(config.loss.vgg16)):
        raise ConfigError("config fields 'loss.style' / 'loss.content' need 'loss.vgg16': the path "
                          f"of a torchvision vgg16 state dict (got {config.loss.vgg16!r})")
    _check_official_fields(config)
    if config.optim.schedule == "cosine" and not config.num_steps:
        raise ConfigError("optim.schedule 'cosine' needs config field 'num_steps' (> 0)")
    if not config.num_steps and not config.num_epochs > 0:
        raise ConfigError("set config field 'num_steps' (> 0) or 'num_epochs' (> 0)")
    for key in ("optim.b1", "optim.b2"):
        if not 0 <= _get(config, key) < 1:
            raise ConfigError(f"config field {key!r} must lie in [0, 1); got {_get(config, key)!r}")
    downs, shift_layer = config.model.num_downs, config.model.shift_layer
    if not 2 <= shift_layer <= downs - 1:
        raise ConfigError(f"config field 'model.shift_layer' must lie in [2, model.num_downs - 1 = "
                          f"{downs - 1}]; got {shift_layer}")
    if config.discriminator.kind == "densenet" and config.data.crop_size < 96:
        raise ConfigError("discriminator.kind 'densenet' needs config field 'data.crop_size' >= 96 "
                          f"(it downsamples by 32, then a 3x3 conv); got {config.data.crop_size}")
    if config.data.crop_size % size_multiple(downs):
        raise ConfigError(f"config field 'data.crop_size' must be a multiple of 2**model.num_downs = "
                          f"{size_multiple(downs)}; got {config.data.crop_size}")
    if not check_paths:
        return config
    if config.data.source in ("folder", "paris") and not config.data.dir:
        raise ConfigError(f"data.source {config.data.source!r} needs a folder: --config.data.dir=PATH")
    if config.data.source == "regions":
        for folder in config.data.dir.split(","):
            if folder.strip() not in ("", "builtin") and not os.path.isdir(os.path.expanduser(folder.strip())):
                raise ConfigError(f"config field 'data.dir': {folder.strip()} is not a folder")
    elif config.data.dir and not os.path.isdir(os.path.expanduser(config.data.dir)):
        raise ConfigError(f"config field 'data.dir': {config.data.dir} is not a folder")
    try:
        masks.check_mask_spec(mask_spec(config))
    except ValueError as e:
        raise ConfigError(f"config field 'data.mask': {first_line(e)}") from None
    return config
