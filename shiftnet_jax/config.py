"""The default training config; ``configs/*.py`` start from it and change what differs.

Every field can be overridden on the command line: ``--config.optim.lr=1e-4``.
"""

import ml_collections


def default_config() -> ml_collections.ConfigDict:
    """The paper's setting (Sec. 4): Adam 2e-4, beta1 0.5, batch 1, 30 epochs, loss
    weights L1 1, guidance 0.01, adversarial 0.002, 256x256 crops of images whose
    shorter side is 350, horizontal flips, a 128x128 centre hole."""
    c = ml_collections.ConfigDict()
    c.name = "shiftnet"
    c.seed = 0

    c.model = ml_collections.ConfigDict(dict(
        ngf=64, num_downs=8, norm="instance", shift_layer=3, feature_hole="nearest",
        triple_weight=1.0, output_channels=3, conv_impl="auto"))
    c.discriminator = ml_collections.ConfigDict(dict(
        ndf=64, n_layers=3, spectral_norm=True, norm="instance"))

    c.data = ml_collections.ConfigDict(dict(
        source="sample", dir="", name="", classes=(), train_split="train",
        eval_split="test", cache_dir="", load_size=350, crop_size=256,
        # "kind" or "kind:option=value,...", e.g. "center", "rect:min_size=32,max_size=128",
        # "island", "strokes", "mix"; see shiftnet_jax.masks.make_mask_fn.
        mask="center:hole=128", num_workers=0, prefetch=2))

    c.loss = ml_collections.ConfigDict(dict(
        l1=1.0, guidance=0.01, adversarial=0.002, gan="vanilla"))
    c.optim = ml_collections.ConfigDict(dict(lr=2e-4, b1=0.5, b2=0.999))

    c.batch_size = 1          # global, over all devices and hosts
    c.num_epochs = 30.0       # used when num_steps is 0
    c.num_steps = 0
    c.compute_dtype = "float32"   # "bfloat16": bf16 compute, f32 params and optimiser

    c.log_every = 50
    c.sample_every = 1000
    c.checkpoint_every = 2000
    c.keep_checkpoints = 3
    c.eval_batches = 8        # test batches evaluated at the end of training
    c.distributed = False     # call jax.distributed.initialize() (multi-host)
    return c
