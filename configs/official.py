"""Train the official way: the official code's training step, as it is (docs/official-mode.md).

On top of the paper's settings (configs/paris.py's defaults): ``compat = "official"``
runs ``ShiftNetModel.optimize_parameters`` step for step (G twice, the guidance over
all positions, D / discounted L1 / VGG on the hole crop, the official loss weights,
Adam betas, learning-rate policy and initialisation), with the official 120x120 centre hole (128 minus an overlap of 4).
Its VGG16 style (x10) and content (x1) losses need torchvision's ImageNet VGG16
weights, a download the official code makes and we do not: pass a state dict with
``--config.loss.vgg16=PATH`` (e.g. ``vgg16-397923af.pth``), or switch them off with
``--config.loss.style=0 --config.loss.content=0``.

    python train.py --config configs/official.py --config.loss.vgg16=vgg16.pth
"""

from shiftnet_jax.config import default_config


def get_config():
    c = default_config()
    c.name = "official"
    c.compat = "official"
    c.data.mask = "center:hole=120"     # the official --overlap 4: 120x120 at rows/cols 68..187
    # The official weights, ours = official / lambda_A (100): L1 x100, GAN x0.2, guidance
    # (strength) x1, discounted hole L1 x400, style x10, content x1, TV x0.
    c.loss.update(dict(l1=1.0, adversarial=0.002, guidance=0.01, hole_l1=4.0, discounting=True,
                       style=0.1, content=0.01, tv=0.0, gan="vanilla"))
    c.optim.update(dict(lr=2e-4, b1=0.5, b2=0.999))   # wgan_gp: (0, 0.9), as the official code
    # The official --lr_policy lambda, --niter 30, --niter_decay 0, stepped per epoch: epochs
    # 1-29 at 2e-4, the 30th (its last) at 0 (shiftnet_jax/train/official_schedule.py).
    c.official.update(dict(lr_policy="lambda", niter=30, niter_decay=0, epoch_count=1,
                           init_type="normal", init_gain=0.02))   # and --init_type / --init_gain
    c.num_epochs = 30.0                 # niter + niter_decay + 1 - epoch_count
    return c
