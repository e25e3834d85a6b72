"""``profile``: where the generator's time goes, each layer timed alone at its shape.

The layers and their shapes are read from the model itself: :func:`model_layers`
runs ``model.init`` under ``jax.eval_shape`` with a Flax method interceptor that
records every 4x4 conv, transposed conv, other conv, norm and the shift level
(outermost call only: the res variant's ResBlock is part of its shift level), with
the abstract arguments it was called with. So the figures follow the model for
every variant (the res variants feed 2C channels to the up conv of the shift
level, the plain one 3C; the face variant has a 6x6 conv and a second encoder
pass), and nothing here restates the architecture.

Each layer is timed forward and forward + backward (to its inputs and
parameters); each 4x4 conv in every formulation of ``shiftnet_jax.nets.conv``
(``*``: the one the model uses). Beside them: the whole generator forward and
forward + backward, and the discriminator alone (eval mode).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from benchmarks import measure, workloads
from shiftnet_jax.nets import conv as cv
from shiftnet_jax.nets.discriminators import Discriminator
from shiftnet_jax.nets.feature_hole import feature_hole
from shiftnet_jax.nets.shift_level import ShiftLevel

KIND = "profile"
RECORDED = {cv.Conv4x4: None, nn.Conv: "conv", nn.InstanceNorm: "norm", nn.BatchNorm: "norm",
            ShiftLevel: "shift"}


@dataclasses.dataclass
class Layer:
    """One call of a module in the model: ``module(*args, **kwargs) -> output``."""

    path: str                 # e.g. "up_2/conv"
    group: str                # conv, conv_transpose, norm or shift
    module: Any               # an unbound copy of the module
    args: tuple               # jax.ShapeDtypeStruct (or None) per positional argument
    kwargs: dict
    output: Any               # jax.ShapeDtypeStruct

    def describe(self) -> str:
        x = self.args[0].shape
        text = f"{self.path} {self.group} {x[1]}x{x[2]}x{x[3]}"
        return f"{text}->{self.output.shape[-1]}"


def _group(module) -> str:
    for cls, group in RECORDED.items():
        if isinstance(module, cls):
            if cls is cv.Conv4x4:
                return "conv_transpose" if module.transpose else "conv"
            return group
    return ""


def model_layers(model, size: int, batch: int = 1) -> list[Layer]:
    """Every recorded layer call of ``model`` on (batch, size, size) inputs, in call order."""
    layers, depth = [], [0]

    def record(next_fun, args, kwargs, context):
        group = _group(context.module) if context.method_name == "__call__" else ""
        if not group or depth[0]:
            return next_fun(*args, **kwargs)
        depth[0] += 1
        try:
            output = next_fun(*args, **kwargs)
        finally:
            depth[0] -= 1
        spec = lambda a: None if a is None else jax.ShapeDtypeStruct(a.shape, a.dtype)  # noqa: E731
        path = "/".join(context.module.path)
        calls = sum(layer.path.split("#")[0] == path for layer in layers)
        path += f"#{calls + 1}" if calls else ""   # the face variant's second encoder pass
        layers.append(Layer(path, group,
                            context.module.clone(parent=None), tuple(spec(a) for a in args),
                            dict(kwargs), spec(output)))
        return output

    image = jax.ShapeDtypeStruct((batch, size, size, 3), jnp.float32)
    hole = jax.ShapeDtypeStruct((batch, size, size, 1), jnp.float32)
    with nn.intercept_methods(record):
        jax.eval_shape(lambda i, h: model.init(jax.random.key(0), i, h), image, hole)
    return layers


def operands(layer: Layer, size: int, key):
    """Concrete arguments of a layer call: features >= 0 (after ReLU) for the shift
    level, the centre hole at the feature resolution for boolean holes."""
    out = []
    for i, a in enumerate(layer.args):
        if a is None:
            out.append(None)
        elif a.dtype == jnp.bool_:
            levels = int(math.log2(size // a.shape[1]))
            out.append(feature_hole(workloads.centre_holes(a.shape[0], size), levels))
        else:
            x = jax.random.normal(jax.random.fold_in(key, i), a.shape, jnp.float32)
            out.append((nn.relu(x) if layer.group == "shift" else x).astype(a.dtype))
    return out


def _with_backward(fn, diff):
    """fn(*ops) -> the VJP of fn w.r.t. the operands at indices ``diff`` for a cotangent
    passed as the last operand."""
    def f(*ops):
        *ops, cot = ops
        def part(*d):
            full = list(ops)
            for i, v in zip(diff, d):
                full[i] = v
            return fn(*full)
        _, pull = jax.vjp(part, *(ops[i] for i in diff))
        return pull(cot)
    return f


def _time(args, fn, ops, diff, out_spec, key) -> dict:
    cot = jax.random.normal(key, out_spec.shape, jnp.float32).astype(out_spec.dtype)
    row = {}
    for pass_, f, o in (("fwd", fn, ops), ("fwd_bwd", _with_backward(fn, diff), (*ops, cot))):
        fig, _ = measure.compile_and_time(f, o, args.warmup, args.repeats)
        row[pass_] = {"flops": fig["flops"], "median_s": fig["median_s"], "min_s": fig["min_s"]}
    return row


def layer_rows(args, layer: Layer, model_impl: str, size: int, key) -> list[dict]:
    """Timed rows of one layer: a 4x4 conv once per formulation, any other module once."""
    ops = operands(layer, size, key)
    base = {"name": layer.describe(), "group": layer.group, "path": layer.path}
    if isinstance(layer.module, cv.Conv4x4):
        x = ops[0]
        kernel = (jax.random.normal(key, (4, 4, x.shape[-1], layer.module.features), jnp.float32)
                  * 0.02).astype(layer.module.dtype)
        transpose, side = layer.module.transpose, min(x.shape[1:3])
        table = cv.CONV_TRANSPOSE if transpose else cv.CONV
        used = cv.choose(model_impl, transpose, side)
        rows = []
        for impl, fn in table.items():
            if impl == "taps" and side > 16:
                continue  # duplicates the input 16x: only for small maps
            rows.append({**base, "impl": impl, "used_by_model": impl == used,
                         **_time(args, fn, (x.astype(layer.module.dtype), kernel), (0, 1),
                                 layer.output, key)})
        return rows
    variables = layer.module.init(jax.random.key(1), *ops, **layer.kwargs)
    floats = [i + 1 for i, o in enumerate(ops)
              if o is not None and jnp.issubdtype(o.dtype, jnp.floating)]
    fn = lambda v, *o: layer.module.apply(v, *o, **layer.kwargs)  # noqa: E731
    return [{**base, "impl": None, "used_by_model": True,
             **_time(args, fn, (variables, *ops), (0, *floats), layer.output, key)}]


def add_arguments(p):
    p.add_argument("--profile-batch", type=int, default=1)


def build(args) -> list[dict]:
    return [{"kind": KIND, "size": s, "dtype": d, "batch": args.profile_batch}
            for s in args.sizes for d in args.dtypes]


def run(args, case, peaks) -> dict:
    size, dtype_name, batch = case["size"], case["dtype"], case["batch"]
    model = workloads.make_generator(args, dtype_name)
    impl = workloads.conv_impl(args)
    key = jax.random.key(0)
    rows = []
    for layer in model_layers(model, size, batch):
        rows += layer_rows(args, layer, impl, size, key)

    disc = Discriminator(ndf=args.ngf, dtype=jnp.dtype(dtype_name))
    x = jax.random.normal(key, (batch, size, size, 3), jnp.float32)
    d_vars = jax.jit(disc.init)(jax.random.key(1, impl="rbg"), x)
    # eval mode (no spectral-norm power iteration); the training step runs D 3x
    rows.append({"name": f"discriminator {size}x{size}x3 (not in G)", "group": "discriminator",
                 "path": "discriminator", "impl": None, "used_by_model": False,
                 **_time(args, lambda v, x: disc.apply(v, x), (d_vars, x), (0, 1),
                         jax.ShapeDtypeStruct(jax.eval_shape(disc.apply, d_vars, x).shape,
                                              jnp.float32), key)})

    variables = workloads.init_generator(model, size)
    image = jnp.asarray(workloads.random_images(batch, size))
    holes = jnp.asarray(workloads.centre_holes(batch, size))
    whole = _time(args, lambda p, i, h: model.apply({**variables, "params": p}, i, h),
                  (variables["params"], image, holes), (0,),
                  jax.ShapeDtypeStruct(image.shape, jnp.float32), key)
    summary = {p: summarise(rows, whole[p], p) for p in ("fwd", "fwd_bwd")}
    disc_row = rows[-1]
    summary["discriminator"] = {p: disc_row[p]["median_s"] for p in ("fwd", "fwd_bwd")}
    return {"rows": rows, "summary": summary, "conv_impl": impl, "variant": args.variant,
            "median_s": whole["fwd"]["median_s"], "min_s": whole["fwd"]["min_s"],
            "images_per_s": batch / whole["fwd"]["median_s"]}


def summarise(rows, total: dict, pass_: str) -> dict:
    """Per group: the sum of the layers as the model runs them, its share of the whole
    generator, and the sum over the fastest formulation of each layer."""
    used, best = {}, {}
    for r in rows:
        if r["group"] == "discriminator":
            continue
        if r["used_by_model"]:
            used[r["group"]] = used.get(r["group"], 0.0) + r[pass_]["median_s"]
        key = (r["group"], r["name"])
        best[key] = min(best.get(key, math.inf), r[pass_]["median_s"])
    best_by_group = {}
    for (group, _), v in best.items():
        best_by_group[group] = best_by_group.get(group, 0.0) + v
    median = total["median_s"]
    return {"generator_median_s": median, "generator_min_s": total["min_s"],
            "generator_flops": total["flops"], "isolated_median_s": used,
            "isolated_sum_s": sum(used.values()), "other_s": median - sum(used.values()),
            "share": {g: v / median for g, v in used.items()},
            "best_formulation_sum_s": best_by_group}


def table_rows(result) -> list:
    return []   # printed by print_details


def print_details(r):
    print(f"\nprofile {r['size']} {r['dtype']} B={r['batch']} variant={r['variant']}: each "
          "layer alone at its shape in the model (median ms), in the formulation the model "
          f"used (conv_impl={r['conv_impl']}: * below)")
    for pass_, s in r["summary"].items():
        if pass_ == "discriminator":
            print(f"  discriminator alone: fwd {s['fwd'] * 1e3:.1f} ms, fwd+bwd "
                  f"{s['fwd_bwd'] * 1e3:.1f} ms")
            continue
        print(f"  generator {pass_}: {s['generator_median_s'] * 1e3:.1f} ms")
        for g, v in s["isolated_median_s"].items():
            print(f"    {g:<16}{v * 1e3:>9.1f} ms  {100 * s['share'][g]:5.1f} %   best "
                  f"formulation {s['best_formulation_sum_s'][g] * 1e3:9.1f} ms")
        print(f"    {'other':<16}{s['other_s'] * 1e3:>9.1f} ms  (activations, concat, "
              "fusion; negative = layers run faster inside the model)")
    print(f"  {'layer':<42}{'impl':>10}{'fwd ms':>8}{'GFLOP/s':>9}{'fwd+bwd ms':>12}"
          f"{'GFLOP/s':>9}")
    for row in r["rows"]:
        mark = "*" if row["used_by_model"] and row["impl"] else " "
        line = f"  {row['name']:<42}{(row['impl'] or '') + mark:>10}"
        for pass_, width in (("fwd", 8), ("fwd_bwd", 12)):
            x = row[pass_]
            rate = x["flops"] / x["median_s"] / 1e9 if x["flops"] else None
            line += f"{x['median_s'] * 1e3:>{width}.2f}{'-' if rate is None else f'{rate:9.1f}':>9}"
        print(line)
