"""Fresh weights as the official ``networks.init_weights`` (shiftnet_jax/train/official_init.py):
the statistics of the drawn kernels in PyTorch's layout and fan conventions, zero biases,
BatchNorm scales N(1, gain), buffers kept. That a fresh official-mode run starts from them
is checked where configs/official.py trains (tests/test_shipped_configs.py: one compile
of the model there instead of another here)."""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import IN_REPO_FIXTURES

from shiftnet_jax import config as configlib
from shiftnet_jax.nets.generator import ShiftNetGenerator
from shiftnet_jax.torchfile.patchgan_state import patchgan_from_torch_state_dict
from shiftnet_jax.train import official_init

ROOT = Path(__file__).resolve().parents[1]
SHAPE = (256, 128, 4, 4)   # a PyTorch conv weight: out, in, kh, kw (fan_in 2048, fan_out 4096)


@pytest.mark.parametrize("init_type, gain, std", [
    ("normal", 0.02, 0.02),
    ("xavier", 0.5, 0.5 * np.sqrt(2 / (2048 + 4096))),
    ("kaiming", 0.5, np.sqrt(2 / 2048)),   # a = 0, mode fan_in: the gain is not used
])
def test_a_large_layer_has_the_official_std(init_type, gain, std):
    w = official_init.draw_weight(np.random.default_rng(0), SHAPE, init_type, gain)
    assert w.shape == SHAPE and w.dtype == np.float32
    assert abs(w.mean()) < 0.01 * std
    assert w.std() == pytest.approx(std, rel=0.01)


@pytest.mark.parametrize("shape", [(16, 8, 3, 3), (512, 4, 2, 2), (12, 4, 2, 2)],
                         ids=["wide", "tall", "nearly-square"])
def test_orthogonal_is_orthogonal_times_the_gain(shape):
    w = official_init.draw_weight(np.random.default_rng(1), shape, "orthogonal", 0.7).reshape(shape[0], -1)
    small = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w   # rows, else columns orthonormal
    np.testing.assert_allclose(small, 0.49 * np.eye(len(small)), atol=2e-6)


def _flat(tree):
    return {"/".join(str(k.key) for k in path): np.asarray(v)
            for path, v in jax.tree_util.tree_leaves_with_path(tree)}


G_KWARGS = dict(ngf=8, num_downs=6, shift_layer=3, norm="batch", variant="res")


@pytest.fixture(scope="module")
def networks():
    """A res generator (ngf 8, BatchNorm; its variables' shapes, traced, not compiled) with
    recognisable buffers, and the official code's own initial PatchGAN (BatchNorm, spectral
    norm: its u and v) from a trajectory fixture."""
    model = ShiftNetGenerator(**G_KWARGS)
    shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 64, 64, 3)),
                            jnp.zeros((1, 64, 64, 1)))
    g_vars = jax.tree.map(lambda s: np.full(s.shape, 0.25, np.float32), shapes)
    fixture = np.load(IN_REPO_FIXTURES / "trajectory_batch_norm.npz")
    d_kwargs, d_vars = patchgan_from_torch_state_dict(
        {k[len("d_init/"):]: fixture[k] for k in fixture if k.startswith("d_init/")})
    return g_vars, d_kwargs, d_vars


def _initialise(networks, init_type, gain):
    g_vars, d_kwargs, d_vars = networks
    return official_init.initialise(G_KWARGS, g_vars, d_kwargs, d_vars, init_type, gain, seed=3)


@pytest.mark.parametrize("init_type", ["normal", "xavier", "kaiming", "orthogonal"])
def test_biases_are_zero_batch_norm_scales_near_one_and_buffers_kept(networks, init_type):
    g_new, d_new = _initialise(networks, init_type, 0.5)
    for old, new in ((networks[0], g_new), (networks[2], d_new)):
        before, after = _flat(old), _flat(new)
        assert before.keys() == after.keys()
        for name, value in after.items():
            assert value.shape == before[name].shape and value.dtype == np.float32, name
            if name.startswith("batch_stats"):   # running statistics, spectral norm's u and v
                np.testing.assert_array_equal(value, before[name], err_msg=name)
            elif name.endswith("bias"):
                assert not value.any(), name
            elif name.endswith("scale"):         # BatchNorm: N(1, gain)
                assert abs(value.mean() - 1) < 0.6 and 0.2 < value.std() < 1.0, name
            else:                                # a kernel, redrawn
                assert value.std() > 0 and abs(value.mean()) < 0.1, name   # (it was all 0.25)
    scales = np.concatenate([v for k, v in _flat(g_new).items() if k.endswith("scale")])
    assert scales.mean() == pytest.approx(1, abs=0.1) and scales.std() == pytest.approx(0.5, rel=0.15)


def test_kaiming_counts_fan_in_as_pytorch_for_convs_and_transposed_convs(networks):
    g, d = _initialise(networks, "kaiming", 0.5)
    params = g["params"]
    # Ours are (kh, kw, in, out) for both. PyTorch's fan_in is its weight's dim 1 times 4x4:
    # the input channels of a conv, the *output* channels of a transposed conv.
    down = params["down_4"]["conv"]["kernel"]           # conv 64 -> 64
    up = params["up_2"]["conv"]["kernel"]               # transposed conv 64 -> 16
    assert down.shape[2:] == (64, 64) and up.shape[2:] == (64, 16)
    assert down.std() == pytest.approx(np.sqrt(2 / (64 * 16)), rel=0.03)
    assert up.std() == pytest.approx(np.sqrt(2 / (16 * 16)), rel=0.03)
    res = params["shift_level"]["res"]["conv_0"]["kernel"]   # 3x3 conv
    assert res.std() == pytest.approx(np.sqrt(2 / (res.shape[2] * 9)), rel=0.05)
    conv = d["params"]["conv_3"]["kernel"]
    assert conv.std() == pytest.approx(np.sqrt(2 / (conv.shape[2] * 16)), rel=0.05)


def test_orthogonal_kernels_are_orthogonal_in_pytorchs_layout(networks):
    g, d = _initialise(networks, "orthogonal", 0.5)
    down = np.asarray(g["params"]["down_2"]["conv"]["kernel"])           # (4, 4, in, out)
    rows = np.transpose(down, (3, 2, 0, 1)).reshape(down.shape[3], -1)   # PyTorch: out x in kh kw
    np.testing.assert_allclose(rows @ rows.T, 0.25 * np.eye(len(rows)), atol=1e-5)
    up = np.asarray(g["params"]["up_3"]["conv"]["kernel"])[::-1, ::-1]   # a transposed conv
    rows = np.transpose(up, (2, 3, 0, 1)).reshape(up.shape[2], -1)       # PyTorch: in x out kh kw
    np.testing.assert_allclose(rows @ rows.T, 0.25 * np.eye(len(rows)), atol=1e-5)
    conv = np.asarray(d["params"]["conv_1"]["kernel"])
    rows = np.transpose(conv, (3, 2, 0, 1)).reshape(conv.shape[3], -1)
    np.testing.assert_allclose(rows @ rows.T, 0.25 * np.eye(len(rows)), atol=1e-5)


def _config(init_type, gain):
    c = configlib.load_config(ROOT / "configs" / "official.py")
    c.num_steps = 1
    c.model.update(dict(ngf=4, num_downs=5))
    c.data.update(dict(crop_size=32, mask="island"))   # no hole crop: any size
    c.discriminator.ndf = 4
    c.loss.update(dict(style=0.0, content=0.0))
    c.official.update(dict(init_type=init_type, init_gain=gain))
    return configlib.validate(c, check_paths=False)


def test_the_fields_are_official_mode_only_and_checked():
    ours = configlib.default_config()
    ours.official.init_type = "xavier"
    with pytest.raises(configlib.ConfigError, match="compat 'official' only"):
        configlib.validate(ours, check_paths=False)
    with pytest.raises(configlib.ConfigError, match="'official.init_type' must be one of"):
        _config("uniform", 0.02)
