"""Print the parity numbers of the README's table "The official models and options".

    python tools/parity_report.py

For every fixture of tests/fixtures made from the official code: the relative L2
error of the output (or loss), of all gradients together, and the worst single
gradient tensor against max(|ref|, 1e-2 * largest |ref|) (the near-zero rule).
Uses the tests' own loaders (no torch needed).
"""

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

import test_densenet_d as dense  # noqa: E402
import test_gan_losses as gan  # noqa: E402
import test_variants_parity as variants  # noqa: E402
from conftest import nhwc  # noqa: E402

from shiftnet_jax.nets import vgg  # noqa: E402
from shiftnet_jax.nets.discriminators import Discriminator  # noqa: E402
from shiftnet_jax.train import losses


def rel(a, b):
    b = np.asarray(b)
    return float(np.linalg.norm(np.asarray(a) - b) / max(np.linalg.norm(b), 1e-30))


def grad_errors(got, want):
    """(relative error of all gradients, worst tensor's error, its path)."""
    flat = lambda t: np.concatenate([np.ravel(x) for x in jax.tree.leaves(t)])
    largest = max(np.linalg.norm(x) for x in jax.tree.leaves(want))
    worst = max((np.linalg.norm(np.asarray(g) - w) / max(np.linalg.norm(w), 1e-2 * largest),
                 jax.tree_util.keystr(p))
                for (p, w), g in zip(jax.tree.leaves_with_path(want), jax.tree.leaves(got)))
    return rel(flat(got), flat(want)), worst[0], worst[1]


def main():
    print("generator variants (output; all gradients; worst gradient tensor)")
    for name in variants.CASES:
        case = variants.load_variant(name)
        grads, (output, _) = variants.run(name)
        _, expected = variants.from_torch_state_dict(case["grad"],
                                                     variant=case["kwargs"].get("variant"))
        out = max(variants.output_errors(case, output).values())
        total, worst, where = grad_errors({"params": grads["params"]}, expected)
        print(f"  {name:15s} output {out:.1e}  gradients {total:.1e}  worst {worst:.1e} {where}")

    print("adversarial losses (losses; gradients wrt the logits)")
    for kind in ("vanilla", "lsgan", "wgan_gp", "re_s_gan", "re_avg_gan"):
        f = gan.FIXTURE
        d, dg = jax.value_and_grad(losses.discriminator_loss, argnums=(0, 1))(gan.REAL, gan.FAKE, kind)
        g, gg = jax.value_and_grad(lambda r, x: losses.generator_adversarial_loss(x, kind, r),
                                   argnums=(0, 1))(gan.REAL, gan.FAKE)
        loss = max(rel(d, f[f"{kind}/d_loss"]), rel(g, f[f"{kind}/g_loss"]))
        names = ("d_grad_real", "d_grad_fake", "g_grad_real", "g_grad_fake")
        grad = max(rel(o, nhwc(f[f"{kind}/{n}"])) for o, n in zip((*dg, *gg), names)
                   if np.abs(f[f"{kind}/{n}"]).max() > 0)
        print(f"  {kind:15s} losses {loss:.1e}  logit gradients {grad:.1e}")

    f = gan.FIXTURE
    d = Discriminator(ndf=2, n_layers=3, norm="instance", spectral_norm=False)
    real, fake = nhwc(f["gp_real"]), nhwc(f["gp_fake"])
    value, grads = jax.value_and_grad(lambda p: losses.gradient_penalty(
        lambda x: d.apply({"params": p}, x), real, fake, f["gp_alpha"]))(
        gan._official_discriminator_params())
    total, worst, where = grad_errors(grads, gan._official_grads_tree())
    print(f"  gradient penalty value {rel(value, f['gp_value']):.1e}  parameter gradients "
          f"{total:.1e}  worst {worst:.1e} {where}")

    print("other losses (loss; gradient wrt the output)")
    out, target = nhwc(f["aux_output"]), nhwc(f["aux_target"])
    hole = np.broadcast_to(nhwc(f["aux_hole"]), out.shape[:3] + (1,)).astype(np.float32)
    v, g = jax.value_and_grad(lambda o: losses.discounted_hole_l1(o, target, hole))(out)
    print(f"  discounted L1   {rel(v, f['discounted_l1']):.1e}  {rel(g, nhwc(f['discounted_l1_grad'])):.1e}")
    v, g = jax.value_and_grad(lambda o: losses.total_variation(o * hole))(out)
    print(f"  TV              {rel(v, f['tv']):.1e}  {rel(g, nhwc(f['tv_grad'])):.1e}")
    params = vgg.vgg16_params({k[len("vgg_state/"):]: f[k] for k in f.files
                               if k.startswith("vgg_state/")})
    vf, vr = nhwc(f["vgg_fake"]), nhwc(f["vgg_real"])
    (style, content), vjp = jax.vjp(lambda x: vgg.style_and_content(params, x, vr), vf)
    print(f"  VGG style       {rel(style, f['vgg_style']):.1e}  "
          f"{rel(vjp((1.0, 0.0))[0], nhwc(f['vgg_style_grad'])):.1e}")
    print(f"  VGG content     {rel(content, f['vgg_content']):.1e}  "
          f"{rel(vjp((0.0, 1.0))[0], nhwc(f['vgg_content_grad'])):.1e}")

    z = dense.Z
    state = {k[len("state/"):]: z[k] for k in z.files if k.startswith("state/")}
    kwargs, variables = dense.from_torch_state_dict(state)
    net = dense.DenseNetDiscriminator(**kwargs)
    image = nhwc((z["image_u8"] / 127.5 - 1).astype(np.float32))
    weights = nhwc(z["loss_weights"]).astype(np.float32)
    output = net.apply(variables, image)
    grads = jax.grad(lambda p: jnp.sum(net.apply({**variables, "params": p}, image) * weights))(
        variables["params"])
    _, expected = dense.from_torch_state_dict(
        {**state, **{k[len("grad/"):]: z[k] for k in z.files if k.startswith("grad/")}})
    total, worst, where = grad_errors(grads, expected["params"])
    print(f"densenet discriminator: output {rel(output, nhwc(z['output'])):.1e}  gradients "
          f"{total:.1e}  worst {worst:.1e} {where}")


if __name__ == "__main__":
    main()
