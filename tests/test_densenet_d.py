"""The official densenet discriminator against its own code (tests/fixtures/densenet_d.npz,
made by tools/make_loss_fixtures.py), and in the train step's model factory."""

from shiftnet_jax.nets.discriminators import DenseNetDiscriminator
from tools.parity import densenet_run, gradient_errors, rel


def test_densenet_discriminator_matches_the_official_code():
    run = densenet_run()
    assert run["kwargs"] == dict(growth_rate=4, block_config=(2, 2, 2, 2), num_init_features=8,
                                 bn_size=2, spectral_norm=True)
    assert run["output"].shape == (1, 2, 2, 256)
    assert rel(run["output"], run["ref_output"]) < 1e-4
    whole, worst, where = gradient_errors(run["grads"], run["ref_grads"])
    assert whole < 1e-3 and worst < 1e-3, (whole, worst, where)


def test_config_picks_the_densenet_discriminator():
    from shiftnet_jax import config as config_lib
    from shiftnet_jax.train.step import make_models

    config = config_lib.default_config()
    config.discriminator.kind = "densenet"
    config_lib.validate(config)
    _, discriminator = make_models(config)
    assert isinstance(discriminator, DenseNetDiscriminator) and discriminator.spectral_norm
