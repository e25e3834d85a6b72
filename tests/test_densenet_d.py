"""The official densenet discriminator against its own code (tests/fixtures/densenet_d.npz,
made by tools/make_loss_fixtures.py), and in the train step's model factory."""

import jax
import jax.numpy as jnp
import numpy as np
from conftest import IN_REPO_FIXTURES, nhwc

from shiftnet_jax.nets.discriminators import DenseNetDiscriminator
from shiftnet_jax.torchfile.state_dicts import densenet_from_torch_state_dict

Z = np.load(IN_REPO_FIXTURES / "densenet_d.npz")


def rel(a, b):
    return float(np.linalg.norm(np.asarray(a) - b) / np.linalg.norm(b))


def test_densenet_discriminator_matches_the_official_code():
    state = {k[len("state/"):]: Z[k] for k in Z.files if k.startswith("state/")}
    kwargs, variables = densenet_from_torch_state_dict(state)
    assert kwargs == dict(growth_rate=4, block_config=(2, 2, 2, 2), num_init_features=8,
                          bn_size=2, spectral_norm=True)
    d = DenseNetDiscriminator(**kwargs)
    image = nhwc((Z["image_u8"] / 127.5 - 1).astype(np.float32))
    weights = nhwc(Z["loss_weights"]).astype(np.float32)
    loss = lambda p: jnp.sum(d.apply({**variables, "params": p}, image) * weights)
    output = d.apply(variables, image)
    assert output.shape == (1, 2, 2, 256)
    assert rel(output, nhwc(Z["output"])) < 1e-4
    grads = jax.jit(jax.grad(loss))(variables["params"])
    expected = {k[len("grad/"):]: Z[k] for k in Z.files if k.startswith("grad/")}
    _, expected = densenet_from_torch_state_dict({**state, **expected})
    # from_torch_state_dict maps names; the gradient arrays replaced the weights above.
    got = jax.tree.leaves(grads)
    want = jax.tree.leaves(expected["params"])
    flat = lambda leaves: np.concatenate([np.ravel(x) for x in leaves])
    assert rel(flat(got), flat(want)) < 1e-3
    largest = max(np.linalg.norm(w) for w in want)
    for g, w in zip(got, want):
        assert np.linalg.norm(np.asarray(g) - w) / max(np.linalg.norm(w), 1e-2 * largest) < 1e-3


def test_config_picks_the_densenet_discriminator():
    from shiftnet_jax import config as config_lib
    from shiftnet_jax.train.step import make_models

    config = config_lib.default_config()
    config.discriminator.kind = "densenet"
    config_lib.validate(config)
    _, discriminator = make_models(config)
    assert isinstance(discriminator, DenseNetDiscriminator) and discriminator.spectral_norm
