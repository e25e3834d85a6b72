"""Print the parity numbers of the README's table "The official models and options".

    python tools/parity_report.py

For every fixture of tests/fixtures made from the official code: the relative L2
error of the output (or loss), of all gradients together, and the worst single
gradient tensor against max(|ref|, 1e-2 * largest |ref|) (the near-zero rule).
The fixtures' loaders and comparisons are the tests' own, in ``tools/parity.py``
(no torch needed).
"""

import jax
import numpy as np

# tools/parity.py (this script's folder is on sys.path when it runs)
from parity import (VARIANT_CASES, densenet_run, discriminator_tree, expected_variant_gradients,
                    gan_fixture, gradient_errors, load_variant, nhwc, output_errors, rel,
                    run_variant)

from shiftnet_jax.nets import vgg
from shiftnet_jax.nets.discriminators import Discriminator
from shiftnet_jax.torchfile.state_dicts import vgg16_params
from shiftnet_jax.train import losses


def main():
    print("generator variants (output; all gradients; worst gradient tensor)")
    for name in VARIANT_CASES:
        grads, (output, _) = run_variant(name)
        out = max(output_errors(load_variant(name), output).values())
        total, worst, where = gradient_errors({"params": grads["params"]},
                                              expected_variant_gradients(name))
        print(f"  {name:15s} output {out:.1e}  gradients {total:.1e}  worst {worst:.1e} {where}")

    print("adversarial losses (losses; gradients wrt the logits)")
    f = gan_fixture()
    real, fake = nhwc(f["real_logits"]), nhwc(f["fake_logits"])
    for kind in ("vanilla", "lsgan", "wgan_gp", "re_s_gan", "re_avg_gan"):
        d, dg = jax.value_and_grad(losses.discriminator_loss, argnums=(0, 1))(real, fake, kind)
        g, gg = jax.value_and_grad(lambda r, x: losses.generator_adversarial_loss(x, kind, r),
                                   argnums=(0, 1))(real, fake)
        loss = max(rel(d, f[f"{kind}/d_loss"]), rel(g, f[f"{kind}/g_loss"]))
        names = ("d_grad_real", "d_grad_fake", "g_grad_real", "g_grad_fake")
        grad = max(rel(o, nhwc(f[f"{kind}/{n}"])) for o, n in zip((*dg, *gg), names)
                   if np.abs(f[f"{kind}/{n}"]).max() > 0)
        print(f"  {kind:15s} losses {loss:.1e}  logit gradients {grad:.1e}")

    d = Discriminator(ndf=2, n_layers=3, norm="instance", spectral_norm=False)
    real, fake = nhwc(f["gp_real"]), nhwc(f["gp_fake"])
    value, grads = jax.value_and_grad(lambda p: losses.gradient_penalty(
        lambda x: d.apply({"params": p}, x), real, fake, f["gp_alpha"]))(
        discriminator_tree("gp_state/"))
    total, worst, where = gradient_errors(grads, discriminator_tree("gp_grad/"))
    print(f"  gradient penalty value {rel(value, f['gp_value']):.1e}  parameter gradients "
          f"{total:.1e}  worst {worst:.1e} {where}")

    print("other losses (loss; gradient wrt the output)")
    out, target = nhwc(f["aux_output"]), nhwc(f["aux_target"])
    hole = np.broadcast_to(nhwc(f["aux_hole"]), out.shape[:3] + (1,)).astype(np.float32)
    v, g = jax.value_and_grad(lambda o: losses.discounted_hole_l1(o, target, hole))(out)
    print(f"  discounted L1   {rel(v, f['discounted_l1']):.1e}  {rel(g, nhwc(f['discounted_l1_grad'])):.1e}")
    v, g = jax.value_and_grad(lambda o: losses.total_variation(o * hole))(out)
    print(f"  TV              {rel(v, f['tv']):.1e}  {rel(g, nhwc(f['tv_grad'])):.1e}")
    params = vgg16_params({k[len("vgg_state/"):]: f[k] for k in f.files
                               if k.startswith("vgg_state/")})
    vf, vr = nhwc(f["vgg_fake"]), nhwc(f["vgg_real"])
    (style, content), vjp = jax.vjp(lambda x: vgg.style_and_content(params, x, vr), vf)
    print(f"  VGG style       {rel(style, f['vgg_style']):.1e}  "
          f"{rel(vjp((1.0, 0.0))[0], nhwc(f['vgg_style_grad'])):.1e}")
    print(f"  VGG content     {rel(content, f['vgg_content']):.1e}  "
          f"{rel(vjp((0.0, 1.0))[0], nhwc(f['vgg_content_grad'])):.1e}")

    run = densenet_run()
    total, worst, where = gradient_errors(run["grads"], run["ref_grads"])
    print(f"densenet discriminator: output {rel(run['output'], run['ref_output']):.1e}  gradients "
          f"{total:.1e}  worst {worst:.1e} {where}")


if __name__ == "__main__":
    main()
