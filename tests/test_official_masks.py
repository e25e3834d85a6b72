"""Offline mask folders filtered by hole ratio (the official random-mask models were
trained on partial-conv masks of 20-30 %), and the official 255-only hole rule."""

import numpy as np
import pytest
from PIL import Image

from shiftnet_jax.data import masks as M


def _write(path, ratio, value=255):
    mask = np.zeros((20, 20), np.uint8)
    mask.reshape(-1)[: int(round(ratio * 400))] = value
    Image.fromarray(mask).save(path)


def test_files_keep_only_masks_in_the_hole_ratio_range(tmp_path):
    for i, ratio in enumerate([0.05, 0.22, 0.28, 0.5]):
        _write(tmp_path / f"m{i}.png", ratio)
    fn = M.make_mask_fn(M.parse_mask_spec(f"files:paths={tmp_path},min_ratio=0.2,max_ratio=0.3"))
    rng = np.random.default_rng(0)
    seen = {round(M.hole_ratio(fn(rng, 20)), 2) for _ in range(40)}
    assert seen == {0.22, 0.28}
    with pytest.raises(ValueError, match=r"no mask .* hole ratio in \[0.6, 0.7\].*0.050 to 0.500"):
        M.make_mask_fn({"kind": "files", "paths": str(tmp_path), "min_ratio": 0.6,
                        "max_ratio": 0.7})


def test_official_rule_threshold_254_counts_only_white_pixels(tmp_path):
    """The official loader reads a mask with ToTensor and byte(): only 255 is a hole."""
    _write(tmp_path / "grey.png", 0.25, value=200)
    fn = M.make_mask_fn({"kind": "files", "paths": str(tmp_path), "threshold": 254})
    assert M.hole_ratio(fn(np.random.default_rng(0), 20)) == 0
