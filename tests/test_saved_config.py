"""A checkpoint's config.json is checked by the rules of --config (shiftnet_jax/saved_config.py)."""

import pytest

from shiftnet_jax.config import ConfigError
from shiftnet_jax.saved_config import check_saved


def test_saved_config_uses_the_rules_of_the_command_line():
    with pytest.raises(ConfigError, match="unknown config group 'modle'"):
        check_saved({"modle": {"ngf": 3}})
    with pytest.raises(ConfigError, match="'model.shift_tile' takes an integer >= 1 or null"):
        check_saved({"model": {"shift_tile": "x"}})
    with pytest.raises(ConfigError, match="'optim.lr' takes a finite number"):
        check_saved({"optim": {"lr": float("nan")}})
    assert check_saved({"step": 3, "source": "x.pth", "model": {"ngf": 8}}).model.ngf == 8
