"""The fixtures made from the official code, and how ours is compared with them.

Shared by the parity tests (``tests/test_variants_parity.py``, ``test_gan_losses.py``,
``test_densenet_d.py``) and ``tools/parity_report.py``, which prints the numbers the
tests check. The fixtures are in ``tests/fixtures`` (made by ``tools/make_*_fixtures.py``;
``tests/fixtures/README.md`` lists their keys). No torch needed.

* :func:`rel`: relative L2 error; :func:`gradient_errors`: of all gradients together
  and of the worst single tensor against max(|ref|, 1e-2 * largest |ref|) (the
  near-zero rule: biases right before a norm have a true gradient of zero).
* generator variants: :func:`load_variant`, :func:`run_variant`, :func:`output_errors`;
* the GAN-loss fixture: :func:`gan_fixture`, :func:`discriminator_tree`;
* the densenet discriminator: :func:`densenet_run`.
"""

from __future__ import annotations

import functools
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from shiftnet_jax.nets.discriminators import DenseNetDiscriminator
from shiftnet_jax.nets.generator import ShiftNetGenerator
from shiftnet_jax.torchfile.state_dicts import densenet_from_torch_state_dict, from_torch_state_dict

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures"
VARIANT_CASES = ("res", "res_batch", "patch_soft", "res_patch_soft", "face", "face_official",
                 "rgb_input", "spectral")
# face_official: the face fixture's network run with the official face shift (flip_fill
# "reference"): its outputs and gradients are the fixture's official_output_*, official_grad/*.
OFFICIAL_FACE = "face_official"


def nhwc(x):
    """PyTorch NCHW array -> NHWC."""
    return np.ascontiguousarray(np.moveaxis(np.asarray(x), 1, -1))


def rel(a, b) -> float:
    """|a - b| / |b| (L2 over all elements; |b| floored at 1e-30)."""
    b = np.asarray(b)
    return float(np.linalg.norm(np.asarray(a) - b) / max(np.linalg.norm(b), 1e-30))


def gradient_errors(got, want):
    """(relative error of all gradients together, worst tensor's error, its path)."""
    flat = lambda t: np.concatenate([np.ravel(x) for x in jax.tree.leaves(t)])  # noqa: E731
    largest = max(np.linalg.norm(x) for x in jax.tree.leaves(want))
    worst = max((np.linalg.norm(np.asarray(g) - w) / max(np.linalg.norm(w), 1e-2 * largest),
                 jax.tree_util.keystr(p))
                for (p, w), g in zip(jax.tree.leaves_with_path(want), jax.tree.leaves(got)))
    return rel(flat(got), flat(want)), worst[0], worst[1]


# ------------------------------------------------------------ generator variants
@functools.cache
def load_variant(name):
    """The fixture of one case, NHWC, with the model the converter builds for it."""
    official = name == OFFICIAL_FACE
    z = np.load(FIXTURES / f"variant_{'face' if official else name}.npz")
    grad_prefix = "official_grad/" if official else "grad/"
    ref = {k: z[k] for k in z.files if not k.startswith(("state/", "grad/", "official_grad/"))}
    if official:
        ref.update({k[len("official_"):]: ref.pop(k) for k in list(ref) if k.startswith("official_output")})
    state = {k[len("state/"):]: z[k] for k in z.files if k.startswith("state/")}
    grad = {k[len(grad_prefix):]: z[k] for k in z.files if k.startswith(grad_prefix)}
    variant = str(z["meta_variant"])
    # The soft variants have the keys of the hard ones: the variant must be named.
    kwargs, variables = from_torch_state_dict(state, variant=variant)
    assert kwargs.get("variant", "shift") == variant
    kwargs.update(shift_sz=int(z["meta_shift_sz"]), mask_thred=int(z["meta_mask_thred"]),
                  fuse=bool(z["meta_fuse"]),
                  patch_order="reference" if "soft" in variant else "spatial")
    if variant == "face":
        kwargs["flip_fill"] = "reference" if official else "chosen"
    image = (z["input_gt_u8"] / 127.5 - 1).astype(np.float32)
    return dict(ref, kwargs=kwargs, variables=variables, state=state, grad=grad,
                image=nhwc(image), hole=nhwc(z["mask"]).astype(np.float32),
                weights=nhwc(z["loss_weights"]).astype(np.float32))


@functools.cache
def _compiled(kwargs_items):
    """One jitted function per architecture (compiling dominates on CPU): the gradient
    of sum(output * R) and, as its auxiliary, the output and the shift features."""
    model = ShiftNetGenerator(**dict(kwargs_items))

    def loss(v, x, h, r):
        output, features = model.apply(v, x, h, return_features=True)
        return jnp.sum(output * r), (output, features)

    return jax.jit(jax.grad(loss, has_aux=True))


@functools.cache
def run_variant(name):
    """(gradients, (output, features)) of one case."""
    case = load_variant(name)
    fn = _compiled(tuple(sorted(case["kwargs"].items())))
    return fn(case["variables"], case["image"], case["hole"], case["weights"])


def expected_variant_gradients(name):
    """The official gradients of one case in our parameter tree."""
    case = load_variant(name)
    return from_torch_state_dict(case["grad"], variant=case["kwargs"].get("variant"))[1]


def output_errors(case, output) -> dict:
    """Relative output error; the face fixture keeps the hole square and the R-weighted
    row and column sums of its 256x256 output (the whole does not compress)."""
    if "output" in case:
        return {"output": rel(output, nhwc(case["output"]))}
    lo, hi = case["meta_crop"]
    weighted = np.asarray(output) * case["weights"]
    return {"hole square": rel(output[:, lo:hi, lo:hi], nhwc(case["output_crop"])),
            "row sums": rel(weighted.sum(axis=2), np.moveaxis(case["output_rows"], 1, -1)),
            "column sums": rel(weighted.sum(axis=1), np.moveaxis(case["output_cols"], 1, -1))}


# ------------------------------------------------------------ GAN losses
@functools.cache
def gan_fixture():
    return np.load(FIXTURES / "gan_losses.npz")


def discriminator_tree(prefix: str) -> dict:
    """The GAN fixture's NLayerDiscriminator arrays under ``prefix`` ("gp_state/":
    weights, "gp_grad/": their gradients) in our Discriminator's tree."""
    f = gan_fixture()
    arrays = {k[len(prefix):]: f[k] for k in f.files if k.startswith(prefix)}
    conv = lambda w: np.transpose(w, (2, 3, 1, 0))  # noqa: E731
    tree = {}
    for i, index in enumerate((0, 2, 5, 8, 11)):
        tree[f"conv_{i}"] = {"kernel": conv(arrays[f"model.{index}.weight"]),
                             "bias": arrays[f"model.{index}.bias"]}
        if 0 < i < 4:
            tree[f"norm_{i}"] = {"scale": arrays[f"model.{index + 1}.weight"],
                                 "bias": arrays[f"model.{index + 1}.bias"]}
    return tree


# ------------------------------------------------------------ densenet discriminator
def densenet_run() -> dict:
    """Our DenseNet discriminator on the fixture: kwargs, output, gradients of
    sum(output * R), and the official ones (``ref_output``, ``ref_grads``)."""
    z = np.load(FIXTURES / "densenet_d.npz")
    state = {k[len("state/"):]: z[k] for k in z.files if k.startswith("state/")}
    kwargs, variables = densenet_from_torch_state_dict(state)
    net = DenseNetDiscriminator(**kwargs)
    image = nhwc((z["image_u8"] / 127.5 - 1).astype(np.float32))
    weights = nhwc(z["loss_weights"]).astype(np.float32)
    grads = jax.jit(jax.grad(lambda p: jnp.sum(
        net.apply({**variables, "params": p}, image) * weights)))(variables["params"])
    # the mapping of names; the gradient arrays replace the weights
    grad = {k[len("grad/"):]: z[k] for k in z.files if k.startswith("grad/")}
    _, expected = densenet_from_torch_state_dict({**state, **grad})
    return {"kwargs": kwargs, "output": net.apply(variables, image),
            "ref_output": nhwc(z["output"]), "grads": grads, "ref_grads": expected["params"]}
