"""Shift-Net image inpainting (Yan et al., ECCV 2018) in JAX/Flax.

Faces (the names other code imports): :mod:`shiftnet_jax.model` (the networks),
:mod:`shiftnet_jax.shift` (the shift operation), :mod:`shiftnet_jax.config`.
Folders by role: ``nets/`` the networks and the shift, ``torchfile/`` the safe
``.pth`` reader and every torch <-> ours mapping, ``data/`` images, masks,
sources and the loader, ``train/`` losses, the step, data parallelism and the
loop, ``inference/`` forward, metrics, evaluation and inpainting, ``studio/``
the web page.
"""

__version__ = "0.2.0"
