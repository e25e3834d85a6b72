"""The shift level's analysis options (paper Figs. 10 and 11): zeroing a third of the
concatenation, the random shift; no parameter added, defaults unchanged."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import key

from shiftnet_jax.nets.generator import ShiftNetGenerator
from shiftnet_jax.nets.shift import shift
from shiftnet_jax.nets.shift_level import ShiftLevel, random_shift


def _features(seed=0, b=2, h=6, w=5, c=4):
    rng = np.random.default_rng(seed)
    decoded, encoded = (jnp.asarray(np.abs(rng.normal(size=(b, h, w, c))), jnp.float32) for _ in range(2))
    hole = np.zeros((b, h, w), bool)
    hole[0, 1:4, 1:3] = True
    hole[1, :, :] = True  # nothing known
    return decoded, encoded, jnp.asarray(hole)


@pytest.mark.parametrize("part, index", [("decoded", 0), ("encoded", 1), ("shifted", 2)])
def test_ablate_zeroes_exactly_that_third(part, index):
    decoded, encoded, hole = _features()
    full = ShiftLevel().apply({}, decoded, encoded, hole)
    cut = ShiftLevel(ablate=part).apply({}, decoded, encoded, hole)
    thirds, cuts = jnp.split(full, 3, axis=-1), jnp.split(cut, 3, axis=-1)
    np.testing.assert_array_equal(thirds[2], shift(decoded, encoded, hole))
    for k in range(3):
        np.testing.assert_array_equal(cuts[k], 0 if k == index else thirds[k])


def test_random_shift_copies_known_features_into_the_hole_only():
    decoded, encoded, hole = _features()
    out = np.asarray(random_shift(encoded, hole))
    enc, h = np.asarray(encoded), np.asarray(hole)
    known = enc[0][~h[0]]
    for y, x in zip(*np.nonzero(h[0])):
        assert any(np.array_equal(out[0, y, x], k) for k in known)  # some known position's feature
    assert (out[0][~h[0]] == 0).all() and (out[1] == 0).all()     # nothing known: zeros
    np.testing.assert_array_equal(out, random_shift(encoded, hole))  # the same draw
    # Not the nearest neighbour: over the hole, the random sources differ from the argmax.
    assert not np.array_equal(out, np.asarray(shift(decoded, encoded, hole)))
    assert len({tuple(out[0, y, x]) for y, x in zip(*np.nonzero(h[0]))}) > 1


def test_options_keep_the_parameter_tree_and_run_a_trained_layout():
    image = jax.random.uniform(key(), (1, 64, 64, 3), minval=-1, maxval=1)
    hole = jnp.zeros((1, 64, 64, 1)).at[:, 16:48, 16:48].set(1)
    base = ShiftNetGenerator(ngf=4, num_downs=5)
    variables = base.init(key(1), image, hole)
    ref = base.apply(variables, image, hole)
    outs = {}
    for options in ({"ablate": "decoded"}, {"ablate": "encoded"}, {"ablate": "shifted"},
                    {"shift_mode": "random"}):
        model = base.clone(**options)
        shapes = jax.eval_shape(model.init, key(1), image, hole)  # traced, not compiled
        assert jax.tree.map(jnp.shape, shapes) == jax.tree.map(jnp.shape, variables)
        outs[str(options)] = model.apply(variables, image, hole)  # the same weights load
        assert np.isfinite(np.asarray(outs[str(options)])).all()
        assert not np.allclose(outs[str(options)], ref)
    with pytest.raises(ValueError, match="ablate must be one of"):
        jax.eval_shape(base.clone(ablate="skip").init, key(1), image, hole)
    with pytest.raises(ValueError, match="shift_mode must be one of nearest, random"):
        jax.eval_shape(base.clone(shift_mode="far").init, key(1), image, hole)
