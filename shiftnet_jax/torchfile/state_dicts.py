"""Every mapping between an official PyTorch state dict and our parameter trees:
the generator (each variant, both ways), the densenet discriminator, VGG16.

The reference (``unet_shift_triple``) nests one ``UnetSkipConnectionBlock`` per
level; its ``state_dict`` names encode the nesting::

    model.model.0            down_0 conv        (outermost block, index 0)
    model.model.3            up_0 transposed conv
    model.model.1.model.*    level 1; each deeper level adds ``.3.model``
    level i:    .1 down conv, .2 down norm, .5 up conv, .6 up norm
    shift level: .7 up conv, .8 up norm     (.5/.6 are the InnerCos/shift layers)
    innermost:  .1 down conv, .3 up conv, .4 up norm

Variants (``shiftnet_jax.nets.shift_level``): ``res_unet_shift_triple`` adds the shift
level's residual block at ``.6.res_net.{0,3}``; the patch soft variants have
exactly the keys of the hard ones; ``face_unet_shift_triple`` names its layers
``e1_c .. e8_c`` / ``e{2..7}_norm`` (encoder) and ``d1_dc .. d8_dc`` /
``d{1..7}_norm`` (decoder, innermost first), with a 6x6 ``e3_c``.

Layouts: Conv2d (O, I, kH, kW) -> Flax (kH, kW, I, O); ConvTranspose2d
(I, O, kH, kW) -> (kH, kW, I, O) flipped in space (Flax's transposed conv is a
plain conv over the dilated input).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from shiftnet_jax.nets.generator import ShiftNetGenerator
from shiftnet_jax.nets.shift_level import OFFICIAL_TO_VARIANT, VARIANTS
from shiftnet_jax.torchfile.reader import read_torch_state_dict

# Entries that old checkpoints carry and our model has no use for.
IGNORED = re.compile(r"(num_batches_tracked|running_mean|running_var)$")


def _level_prefixes(names):
    """Map level index -> torch name prefix, following the ``.3.model`` nesting."""
    prefixes = {0: "model.model."}
    prefix, level = "model.model.1.model.", 1
    while any(n.startswith(prefix) for n in names):
        prefixes[level] = prefix
        prefix, level = prefix + "3.model.", level + 1
    return prefixes


def _layer_names(prefixes, names):
    """(level -> {'down_conv', 'down_norm', 'up_conv', 'up_norm'} -> torch prefix), kwargs."""
    last = max(prefixes)
    layers, shift_level = {}, None
    for level, p in prefixes.items():
        if level == 0:
            layers[level] = {"down_conv": p + "0.", "up_conv": p + "3."}
        elif level == last:
            layers[level] = {"down_conv": p + "1.", "up_conv": p + "3.", "up_norm": p + "4."}
        elif any(n.startswith(p + "7.") for n in names):
            shift_level = level
            layers[level] = {"down_conv": p + "1.", "down_norm": p + "2.",
                             "up_conv": p + "7.", "up_norm": p + "8."}
        else:
            layers[level] = {"down_conv": p + "1.", "down_norm": p + "2.",
                             "up_conv": p + "5.", "up_norm": p + "6."}
    if shift_level is None:
        raise ValueError("not a Shift-Net generator state dict: no shift level found "
                         "(expected a block with an up conv at index 7)")
    return layers, shift_level


MAX_LEVELS = 12  # the reference builds 8; 2**12 is already a 4096x4096 input


def _float_dtype(dtype) -> bool:
    return dtype.kind == "f" or dtype.name.startswith(("bfloat16", "float8"))


def _conv_weight(state, name):
    """A 4-D conv weight of ``state`` or a ValueError that says what is wrong."""
    if name not in state:
        raise ValueError(f"not a Shift-Net generator state dict: {name!r} is missing")
    w = state[name]
    if w.ndim != 4:
        raise ValueError(f"{name!r} has shape {tuple(w.shape)}; a conv weight is 4-D")
    return w


def _conv(w):
    return np.ascontiguousarray(np.transpose(w, (2, 3, 1, 0)))


def _conv_transpose(w):
    return np.ascontiguousarray(np.transpose(w, (2, 3, 0, 1))[::-1, ::-1])


def _weight(state, prefix):
    """A conv's weight name: ``weight``, or ``weight_orig`` under spectral norm."""
    return prefix + ("weight_orig" if prefix + "weight_orig" in state else "weight")


def _spectral_v(v, shape, transposed: bool):
    """PyTorch's spectral-norm ``v`` (I kH kW, in its weight's order) -> our kernel's row
    order (kH kW I; the transposed conv's kernel is flipped in space)."""
    i, kh, kw = (shape[0] if transposed else shape[1]), shape[2], shape[3]
    v = v.reshape(i, kh, kw)
    if transposed:
        v = v[:, ::-1, ::-1]
    return np.ascontiguousarray(v.transpose(1, 2, 0)).reshape(-1)


def _face_layers():
    """The official FaceUnetGenerator's names: e1_c .. e8_c, d1_dc .. d8_dc (8 levels)."""
    layers = {}
    for level in range(8):
        enc, dec = f"e{level + 1}_", f"d{8 - level}_"
        layers[level] = {"down_conv": enc + "c.", "up_conv": dec + "dc."}
        if 0 < level < 7:
            layers[level]["down_norm"] = enc + "norm."
        if level > 0:
            layers[level]["up_norm"] = dec + "norm."
    return layers


def _res_prefix(prefixes, shift_level):
    """Torch prefix of the res variants' residual block (``.6.res_net``)."""
    return prefixes[shift_level] + "6.res_net."


def detect_variant(names, variant=None):
    """The variant the keys show, or ``variant`` if the keys allow it; ValueError otherwise.

    Face and res keys are their own; the patch soft variants have exactly the keys of
    the hard ones (shift -> patch_soft, res -> res_patch_soft), so those are told
    apart only by ``variant``.
    """

    variant = OFFICIAL_TO_VARIANT.get(variant, variant)
    if variant is not None and variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r} (one of {', '.join(VARIANTS)})")
    if "e1_c.weight" in names:
        found, allowed = "face", ("face",)
    elif any(".res_net." in n for n in names):
        found, allowed = "res", ("res", "res_patch_soft")
    else:
        found, allowed = "shift", ("shift", "patch_soft")
    if variant is None:
        return found
    if variant not in allowed:
        raise ValueError(f"the keys are those of {VARIANTS[found]}, which --variant "
                         f"{variant} does not have (possible: {', '.join(allowed)})")
    return variant


def from_torch_state_dict(state: Mapping[str, np.ndarray], norm: str | None = None,
                          variant: str | None = None):
    """Map a reference generator ``state_dict`` to ``(model_kwargs, variables)``.

    Args:
      state: name -> array, PyTorch names and layouts. A mapping of parameters
        only (e.g. gradients with respect to them) is mapped the same way.
      norm: "instance" or "batch". By default "batch" when the file has BatchNorm's
        ``num_batches_tracked`` counters, else "instance" (the reference default):
        checkpoints older than PyTorch 0.4 carry running statistics for
        InstanceNorm too, so those alone cannot tell the two apart.
      variant: a ``ShiftNetGenerator`` variant (or official generator name); by
        default the one the keys show (:func:`detect_variant`).

    Returns:
      model_kwargs: ``ShiftNetGenerator`` arguments (ngf, num_downs, norm,
        shift_layer, output_channels, and ``variant`` unless "shift").
      variables: ``{"params": ...}`` plus ``{"batch_stats": ...}`` for BatchNorm
        checkpoints that hold running statistics.
    """
    state = {k[len("module."):] if k.startswith("module.") else k: np.asarray(v)
             for k, v in state.items()}
    names = [n for n in state if not IGNORED.search(n)]
    variant = detect_variant(names, variant)
    if variant == "face":
        layers, shift_level, res = _face_layers(), 2, None
        first, outer_up = _conv_weight(state, _weight(state, "e1_c.")), \
            _conv_weight(state, _weight(state, "d8_dc."))
    else:
        first = _conv_weight(state, _weight(state, "model.model.0."))
        outer_up = _conv_weight(state, _weight(state, "model.model.3."))
        prefixes = _level_prefixes(names)
        if len(prefixes) > MAX_LEVELS:
            raise ValueError(f"{len(prefixes)} U-Net levels; more than {MAX_LEVELS} is not a "
                             "Shift-Net generator")
        layers, shift_level = _layer_names(prefixes, names)
        res = _res_prefix(prefixes, shift_level) if variant.startswith("res") else None
    if norm is None:
        norm = "batch" if any(n.endswith("num_batches_tracked") for n in state) else "instance"
    if norm not in ("instance", "batch"):
        raise ValueError(f"norm must be 'instance' or 'batch', got {norm!r}")
    kwargs = dict(ngf=int(first.shape[0]), num_downs=len(layers),
                  norm=norm, shift_layer=shift_level + 1,
                  output_channels=int(outer_up.shape[1]))
    if variant != "shift":
        kwargs["variant"] = variant
    if first.shape[1] == 3:   # trained with --add_mask2input 0: RGB input only
        kwargs["add_mask2input"] = False

    params, stats, used = {}, {}, set()

    def take(name, convert=None):
        if name not in state:
            raise ValueError(f"not a Shift-Net generator state dict: {name!r} is missing")
        w = state[name]
        if not _float_dtype(w.dtype):
            raise ValueError(f"{name!r} has dtype {w.dtype}; expected floating point")
        if convert is not None:
            w = convert(_conv_weight(state, name))
        used.add(name)
        return w.astype(np.float32)

    for level, layer in layers.items():
        for direction in ("down", "up"):
            module = f"{direction}_{level}"
            conv_name = layer[f"{direction}_conv"]
            convert = _conv if direction == "down" else _conv_transpose
            # Spectral norm (--use_spectral_norm_G) stores weight_orig, weight_u, weight_v.
            weight = _weight(state, conv_name)
            spectral = weight.endswith("_orig")
            params.setdefault(module, {})["conv"] = {"kernel": take(weight, convert)}
            if spectral and conv_name + "weight_u" in state:   # (absent from gradients)
                stats.setdefault(module, {})["sn"] = {
                    "u": take(conv_name + "weight_u"),
                    "v": _spectral_v(take(conv_name + "weight_v"), state[weight].shape,
                                     transposed=direction == "up")}
            if conv_name + "bias" in state:
                params[module]["conv"]["bias"] = take(conv_name + "bias")
            norm_name = layer.get(f"{direction}_norm")
            if norm_name is None:
                continue
            if norm_name + "weight" in state:
                params[module]["norm"] = {"scale": take(norm_name + "weight"),
                                          "bias": take(norm_name + "bias")}
            if norm == "batch" and norm_name + "running_mean" in state:
                stats.setdefault(module, {})["norm"] = {
                    "mean": take(norm_name + "running_mean"),
                    "var": take(norm_name + "running_var")}
    if res is not None:   # the residual block's two 3x3 convs (its norms have no parameters)
        params["shift_level"] = {"res": {
            f"conv_{i}": {"kernel": take(f"{res}{index}.weight", _conv),
                          "bias": take(f"{res}{index}.bias")}
            for i, index in enumerate((0, 3))}}
    if any(n.endswith("weight_orig") for n in names):
        kwargs["spectral_norm"] = True
    unknown = sorted(set(names) - used)
    if unknown:
        raise ValueError(f"unexpected entries in the state dict: {', '.join(unknown[:5])}"
                         + (" …" if len(unknown) > 5 else ""))
    variables = {"params": params}
    if stats:
        variables["batch_stats"] = stats
    return kwargs, variables


def to_torch_state_dict(model_kwargs, variables):
    """The inverse of :func:`from_torch_state_dict`: our tree -> reference names and layouts.

    Useful to run our weights in the reference code, and to test the mapping.
    """
    levels = model_kwargs["num_downs"]
    shift_level = model_kwargs["shift_layer"] - 1
    variant = model_kwargs.get("variant", "shift")
    prefix, prefixes = "model.model.1.model.", {0: "model.model."}
    for level in range(1, levels):
        prefixes[level] = prefix
        prefix += "3.model."
    if variant == "face":
        layers = _face_layers()
    else:
        names = [prefixes[shift_level] + "7.weight"] + [p + "1." for p in prefixes.values()]
        layers, _ = _layer_names(prefixes, names)
    params = variables.get("params", {})
    stats = variables.get("batch_stats", {})
    state = {}
    for level, layer in layers.items():
        for direction in ("down", "up"):
            module = f"{direction}_{level}"
            conv = params[module]["conv"]
            kernel = np.asarray(conv["kernel"])
            if direction == "down":
                weight = np.transpose(kernel, (3, 2, 0, 1))
            else:
                weight = np.transpose(kernel[::-1, ::-1], (2, 3, 0, 1))
            state[layer[f"{direction}_conv"] + "weight"] = np.ascontiguousarray(weight)
            if "bias" in conv:
                state[layer[f"{direction}_conv"] + "bias"] = np.asarray(conv["bias"])
            norm_name = layer.get(f"{direction}_norm")
            if norm_name and "norm" in params[module]:
                state[norm_name + "weight"] = np.asarray(params[module]["norm"]["scale"])
                state[norm_name + "bias"] = np.asarray(params[module]["norm"]["bias"])
            if norm_name and "norm" in stats.get(module, {}):
                state[norm_name + "running_mean"] = np.asarray(stats[module]["norm"]["mean"])
                state[norm_name + "running_var"] = np.asarray(stats[module]["norm"]["var"])
    if variant.startswith("res"):
        res = _res_prefix(prefixes, shift_level)
        for i, index in enumerate((0, 3)):
            conv = params["shift_level"]["res"][f"conv_{i}"]
            state[f"{res}{index}.weight"] = np.ascontiguousarray(
                np.transpose(np.asarray(conv["kernel"]), (3, 2, 0, 1)))
            state[f"{res}{index}.bias"] = np.asarray(conv["bias"])
    return state


def check_variables(model_kwargs, variables):
    """Check every variable against what ``ShiftNetGenerator(**model_kwargs)`` creates.

    Raises ValueError naming the first missing, unexpected, misshapen or
    non-float32 variable. Builds no arrays (``jax.eval_shape``).
    """
    model = ShiftNetGenerator(**model_kwargs)
    size = model.size_multiple
    image = jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32)
    hole = jax.ShapeDtypeStruct((1, size, size, 1), jnp.float32)
    want = traverse_util.flatten_dict(jax.eval_shape(model.init, jax.random.key(0), image, hole), sep="/")
    have = traverse_util.flatten_dict(variables, sep="/")
    for path in sorted(set(want) | set(have)):
        if path not in have:
            raise ValueError(f"the model needs {path} {tuple(want[path].shape)}, which the file lacks")
        if path not in want:
            raise ValueError(f"the file has {path}, which the model does not use")
        if tuple(have[path].shape) != tuple(want[path].shape) or have[path].dtype != want[path].dtype:
            raise ValueError(f"{path} is {tuple(have[path].shape)} {have[path].dtype} in the file "
                             f"(after layout conversion); the model needs "
                             f"{tuple(want[path].shape)} {want[path].dtype}")


def densenet_from_torch_state_dict(state):
    """An official ``DenseNetDiscrimator`` state dict (``model.features.*``,
    ``model.conv_last.*``) -> (kwargs, variables) of :class:`DenseNetDiscriminator`."""
    state = {k[len("model."):] if k.startswith("model.") else k: np.asarray(v)
             for k, v in state.items()}
    params, stats = {}, {}

    def put_conv(ours, prefix, bias=False):
        weight = _weight(state, prefix)
        w = state[weight]
        params[ours] = {"kernel": np.ascontiguousarray(np.transpose(w, (2, 3, 1, 0)))}
        if bias:
            params[ours]["bias"] = state[prefix + "bias"]
        if weight.endswith("_orig") and prefix + "weight_u" in state:
            stats[f"{ours}_sn"] = {"u": state[prefix + "weight_u"],
                                   "v": _spectral_v(state[prefix + "weight_v"], w.shape, False)}
        return w

    def put_norm(ours, prefix):
        params[ours] = {"scale": state[prefix + "weight"], "bias": state[prefix + "bias"]}
        if prefix + "running_mean" in state:
            stats[ours] = {"mean": state[prefix + "running_mean"],
                           "var": state[prefix + "running_var"]}

    first = put_conv("conv0", "features.conv0.")
    put_norm("norm0", "features.norm0.")
    blocks = []
    b = 1
    while f"features.denseblock{b}.denselayer1.norm1.weight" in state:
        i = 1
        while f"features.denseblock{b}.denselayer{i}.norm1.weight" in state:
            p, name = f"features.denseblock{b}.denselayer{i}.", f"block{b}_layer{i}"
            put_norm(f"{name}_norm1", p + "norm1.")
            bottleneck = put_conv(f"{name}_conv1", p + "conv1.")
            put_norm(f"{name}_norm2", p + "norm2.")
            growth = put_conv(f"{name}_conv2", p + "conv2.").shape[0]
            i += 1
        blocks.append(i - 1)
        if f"features.transition{b}.norm.weight" in state:
            put_norm(f"transition{b}_norm", f"features.transition{b}.norm.")
            put_conv(f"transition{b}_conv", f"features.transition{b}.conv.")
        b += 1
    put_norm("norm5", "features.norm5.")
    put_conv("conv_last", "conv_last.", bias=True)
    spectral = any(k.endswith("weight_orig") for k in state)
    kwargs = dict(growth_rate=int(growth), block_config=tuple(blocks),
                  num_init_features=int(first.shape[0]),
                  bn_size=int(bottleneck.shape[0]) // int(growth), spectral_norm=spectral)
    return kwargs, {"params": params, "batch_stats": stats}


# torchvision vgg16.features indices of the convolutions in each of the three blocks.
BLOCKS = ((0, 2), (5, 7), (10, 12, 14))


def vgg16_params(state):
    """A torchvision vgg16 state dict (name -> array) -> [[(kernel HWIO, bias), ...] x 3]."""
    state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
    blocks = []
    for block in BLOCKS:
        layers = []
        for index in block:
            name = f"features.{index}"
            if f"{name}.weight" not in state or f"{name}.bias" not in state:
                raise ValueError(f"not a torchvision vgg16 state dict: {name}.weight/.bias missing")
            weight = np.asarray(state[f"{name}.weight"], np.float32)
            if weight.ndim != 4 or weight.shape[2:] != (3, 3):
                raise ValueError(f"{name}.weight has shape {weight.shape}; VGG16 convs are 3x3")
            layers.append((np.transpose(weight, (2, 3, 1, 0)),
                           np.asarray(state[f"{name}.bias"], np.float32)))
        blocks.append(layers)
    return blocks


def load_vgg16(path):
    """Read a torchvision ``vgg16`` checkpoint without torch (see :func:`vgg16_params`)."""
    return vgg16_params(read_torch_state_dict(path))
