import numpy as np
import pytest
from conftest import load_reference

from shiftnet_jax.data.masks import center_mask
from shiftnet_jax.nets.feature_hole import feature_hole


def test_nearest_matches_reference_fixture(fixtures_dir):
    for name in ("center", "irregular"):
        ref = load_reference(fixtures_dir, name)
        got = np.asarray(feature_hole(ref["hole"], 3, "nearest"))
        np.testing.assert_array_equal(got, ref["feature_mask"])


def test_conv_rule_marks_252_positions_for_the_reference_centre_hole():
    hole = center_mask(256, hole=120)[None]
    assert int(np.asarray(feature_hole(hole, 3, "nearest")).sum()) == 225
    assert int(np.asarray(feature_hole(hole, 3, "conv")).sum()) == 252


def test_shapes_and_errors():
    hole = np.zeros((2, 64, 32, 1), np.float32)
    assert feature_hole(hole, 2, "conv").shape == (2, 16, 8)
    assert feature_hole(hole[..., 0], 3).shape == (2, 8, 4)
    with pytest.raises(ValueError, match="nearest"):
        feature_hole(hole, 3, "bilinear")
