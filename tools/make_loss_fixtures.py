"""Parity fixture for the adversarial losses, from the official code's own functions.

    /work/venv-torch/bin/python tools/make_loss_fixtures.py \\
        --ref /work/ref/Shift-Net_pytorch --out tests/fixtures

writes ``gan_losses.npz`` (keys in ``tests/fixtures/README.md``). Nothing of the
reference is copied: ``networks.GANLoss``, ``networks.NLayerDiscriminator`` and
``util.cal_gradient_penalty`` are imported from ``--ref`` at run time; no patch is
needed (they run on CPU as they are).

* Losses on fixed logits (two 2x1x6x6 PatchGAN maps, real and fake): for every
  ``--gan_type`` the discriminator and generator losses combined exactly as the
  official training code combines ``GANLoss`` (``backward_D`` / ``backward_G`` of
  ``shiftnet_model.py``; ``re_avg_gan``'s discriminator side from
  ``face_shiftnet_model.py``, the only one that defines it), without ``gan_weight``,
  and their gradients with respect to both logit maps. ``vanilla`` gets
  sigmoid(logits): the official discriminator ends with a sigmoid for it.
* The gradient penalty: ``cal_gradient_penalty`` (type "mixed", constant 1,
  lambda_gp 1) on the official ``NLayerDiscriminator`` (ndf 2, 3 layers, instance
  norm, no spectral norm, weights as the generator fixtures: N(0, 0.02) then
  perturbed and bf16-rounded) at 2x3x32x32 real and fake images; the ``alpha``
  it drew (``torch.rand`` under a fixed seed, drawn again here to record it), the
  penalty and its gradient with respect to every discriminator parameter.
* ``Discounted_L1`` (discounting 1) on the centre-hole crop of a 2x3x32x32 output
  (fineSize 32, overlap 2) and ``TVLoss(1)`` of ``output * hole``, as ``backward_G``
  calls them, with their gradients with respect to the output.
* VGG16 style and content losses: the official ``VGG16FeatureExtractor`` (its
  ``models.vgg16`` replaced by a narrow VGG16 of torchvision's layout, as
  ``tools/official.py`` replaces it for timing: the real weights are a
  download) on 2x3x32x32 fake and real images, summed as ``backward_G`` does, and
  their gradients with respect to the fake image.

And ``densenet_d.npz``: the official ``densenet`` discriminator's ``DenseNet`` class
(spectral norm on, BatchNorm; eval mode) at a small configuration (growth 4, blocks
(2, 2, 2, 2), 8 initial features, bottleneck factor 2: ``DenseNetDiscrimator`` itself
builds DenseNet-121 with ImageNet weights, a download) on a 1x3x128x128 image: the
output, and the gradients of ``sum(output * R)`` for every parameter, state dict
keys prefixed ``model.`` as in ``DenseNetDiscrimator``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os

import numpy as np
import torch

from official import load_reference  # tools/official.py (this script's folder is on sys.path)

GANS = ("vanilla", "lsgan", "wgan_gp", "re_s_gan", "re_avg_gan")


def narrow_vgg16():
    """torchvision's VGG16 feature layout (convs 3x3, ReLU, max pools at the same indices)
    with 4/8/8 channels in the first three blocks, bf16-rounded N(0, 0.3) weights."""
    import types

    layers, c_in = [], 3
    for v in [4, 4, "M", 8, 8, "M", 8, 8, 8, "M"]:
        if v == "M":
            layers.append(torch.nn.MaxPool2d(2, 2))
            continue
        conv = torch.nn.Conv2d(c_in, v, 3, padding=1)
        with torch.no_grad():
            conv.weight.copy_((torch.randn_like(conv.weight) * 0.3).to(torch.bfloat16).float())
            conv.bias.copy_((torch.randn_like(conv.bias) * 0.1).to(torch.bfloat16).float())
        layers += [conv, torch.nn.ReLU(inplace=True)]
        c_in = v
    return types.SimpleNamespace(features=torch.nn.Sequential(*layers))


def official_losses(GANLoss, kind, real, fake):
    """(d_loss, g_loss) as the official backward_D / backward_G combine GANLoss."""
    crit = GANLoss(gan_type=kind)
    if kind == "vanilla":   # the official D ends with a sigmoid for the BCE loss
        real, fake = torch.sigmoid(real), torch.sigmoid(fake)
    if kind == "wgan_gp":
        return torch.mean(fake) - torch.mean(real), -torch.mean(fake)
    if kind in ("vanilla", "lsgan"):
        return (crit(fake, False) + crit(real, True)) * 0.5, crit(fake, True)
    if kind == "re_s_gan":
        return crit(real - fake, True), crit(fake - real, True)
    d = (crit(real - torch.mean(fake), True) + crit(fake - torch.mean(real), False)) / 2.
    g = (crit(real - torch.mean(fake), False) + crit(fake - torch.mean(real), True)) / 2.
    return d, g


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ref", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.set_num_threads(1)
    networks, _, _, commit = load_reference(args.ref)
    import util.util as rutil

    torch.manual_seed(args.seed)
    arrays = {"meta_commit": np.str_(commit or "unknown"), "meta_torch": np.str_(torch.__version__)}
    real = torch.randn(2, 1, 6, 6)
    fake = torch.randn(2, 1, 6, 6)
    arrays.update(real_logits=real.numpy(), fake_logits=fake.numpy())
    for kind in GANS:
        r, f = real.clone().requires_grad_(True), fake.clone().requires_grad_(True)
        d, g = official_losses(networks.GANLoss, kind, r, f)
        # (A loss that does not use a map has zero gradient for it.)
        dr, df = torch.autograd.grad(d, (r, f), retain_graph=True, materialize_grads=True)
        gr, gf = torch.autograd.grad(g, (r, f), materialize_grads=True)
        arrays.update({f"{kind}/d_loss": d.detach().numpy(), f"{kind}/g_loss": g.detach().numpy(),
                       f"{kind}/d_grad_real": dr.numpy(), f"{kind}/d_grad_fake": df.numpy(),
                       f"{kind}/g_grad_real": gr.numpy(), f"{kind}/g_grad_fake": gf.numpy()})

    net = networks.NLayerDiscriminator(3, 2, n_layers=3, norm_layer=networks.get_norm_layer("instance"),
                                       use_sigmoid=False, use_spectral_norm=False)
    networks.init_weights(net, "normal", 0.02)
    with torch.no_grad():
        for name, q in net.named_parameters():
            if q.dim() == 1:
                q.add_(torch.randn_like(q) * (0.1 if name.endswith("weight") else 0.05))
            q.copy_(q.to(torch.bfloat16).float())
    real_images = torch.rand(2, 3, 32, 32) * 2 - 1
    fake_images = torch.rand(2, 3, 32, 32) * 2 - 1
    state = torch.get_rng_state()
    alpha = torch.rand(2, 1)       # what cal_gradient_penalty draws next
    torch.set_rng_state(state)
    gp, _ = rutil.cal_gradient_penalty(net, real_images, fake_images, "cpu", type="mixed",
                                       constant=1.0, lambda_gp=1.0)
    grads = torch.autograd.grad(gp, list(net.parameters()), materialize_grads=True)
    arrays.update(gp_real=real_images.numpy(), gp_fake=fake_images.numpy(),
                  gp_alpha=alpha[:, 0].numpy(), gp_value=gp.detach().numpy())
    for (name, value), grad in zip(net.named_parameters(), grads):
        arrays[f"gp_state/{name}"] = value.detach().numpy()
        arrays[f"gp_grad/{name}"] = grad.numpy()
    # Discounted hole L1 and TV as backward_G uses them, on a 32x32 image with the
    # official centre hole (fineSize 32, overlap 2: rows and columns 10..21).
    from models.modules.losses import Discounted_L1, TVLoss
    opt = argparse.Namespace(fineSize=32, overlap=2, discounting=1)
    out = torch.rand(2, 3, 32, 32, requires_grad=True)
    target = torch.rand(2, 3, 32, 32)
    hole = torch.zeros(1, 1, 32, 32, dtype=torch.bool)
    hole[..., 10:22, 10:22] = True
    with contextlib.redirect_stdout(io.StringIO()):
        discounted = Discounted_L1(opt)(out[..., 10:22, 10:22], target[..., 10:22, 10:22])
    tv = TVLoss(1.0)(out * hole.float())
    arrays.update(aux_output=out.detach().numpy(), aux_target=target.numpy(),
                  aux_hole=hole.numpy(), discounted_l1=discounted.detach().numpy(),
                  discounted_l1_grad=torch.autograd.grad(discounted, out)[0].numpy(),
                  tv=tv.detach().numpy(), tv_grad=torch.autograd.grad(tv, out)[0].numpy())
    # VGG16 style and content: the official VGG16FeatureExtractor around a narrow VGG16
    # of torchvision's layer layout (random weights; the real one is 528 MB), as
    # backward_G sums them over its three outputs.
    import types
    narrow = narrow_vgg16()
    rutil.models = types.SimpleNamespace(vgg16=lambda pretrained=False: narrow)
    extractor = rutil.VGG16FeatureExtractor()
    fake_v = (torch.rand(2, 3, 32, 32) * 2 - 1).requires_grad_(True)
    real_v = torch.rand(2, 3, 32, 32) * 2 - 1
    ff, fr = extractor(fake_v), extractor(real_v)
    mse = torch.nn.MSELoss()
    style = sum(mse(rutil.gram_matrix(a), rutil.gram_matrix(b)) for a, b in zip(ff, fr))
    content = sum(mse(a, b) for a, b in zip(ff, fr))
    arrays.update(vgg_fake=fake_v.detach().numpy(), vgg_real=real_v.numpy(),
                  vgg_style=style.detach().numpy(), vgg_content=content.detach().numpy(),
                  vgg_style_grad=torch.autograd.grad(style, fake_v, retain_graph=True)[0].numpy(),
                  vgg_content_grad=torch.autograd.grad(content, fake_v)[0].numpy())
    for name, value in narrow.features.state_dict().items():
        arrays[f"vgg_state/features.{name}"] = value.numpy()
    path = os.path.join(args.out, "gan_losses.npz")
    np.savez_compressed(path, **arrays)
    print(f"wrote {path} ({os.path.getsize(path)} bytes); commit {commit}, torch {torch.__version__}")
    path = os.path.join(args.out, "densenet_d.npz")
    np.savez_compressed(path, **densenet_arrays(networks))
    print(f"wrote {path} ({os.path.getsize(path)} bytes)")


def densenet_arrays(networks):
    """The official DenseNet discriminator body (its ``DenseNet`` class, spectral norm on,
    BatchNorm) at a small configuration, eval mode: output and parameter gradients."""
    net = networks.DenseNet(growth_rate=4, block_config=(2, 2, 2, 2), use_spectral_norm=True,
                            num_init_features=8, bn_size=2).eval()
    with torch.no_grad():
        for name, q in net.named_parameters():
            if q.dim() == 1:
                q.add_(torch.randn_like(q) * (0.1 if name.endswith("weight") else 0.05))
            q.copy_(q.to(torch.bfloat16).float())
        for name, b in net.named_buffers():
            if name.endswith("running_mean"):
                b.copy_((torch.randn_like(b) * 0.1).to(torch.bfloat16).float())
            elif name.endswith("running_var"):
                b.copy_((1 + torch.rand_like(b)).to(torch.bfloat16).float())
    image_u8 = torch.randint(0, 256, (1, 3, 128, 128), dtype=torch.uint8)
    image = (image_u8.numpy() / 127.5 - 1).astype(np.float32)
    out = net(torch.from_numpy(image))
    weights = torch.randint(0, 2, out.shape).float() * 2 - 1
    (out * weights).sum().backward()
    arrays = {"image_u8": image_u8.numpy(), "output": out.detach().numpy(),
              "loss_weights": weights.numpy().astype(np.int8)}
    # Named as the official DenseNetDiscrimator's state dict (its DenseNet is .model).
    for name, value in net.state_dict().items():
        arrays[f"state/model.{name}"] = value.numpy()
    for name, q in net.named_parameters():
        arrays[f"grad/model.{name}"] = q.grad.numpy()
    return arrays


if __name__ == "__main__":
    main()
