"""The official training loop, replayed: ``shiftnet_jax.official.train_steps`` against
trajectories of the official PyTorch code (tests/fixtures/trajectory_*.npz, made by
tools/make_trajectory_fixtures.py; keys in tests/fixtures/README.md).

From the same initial G and D, the same batches, masks and random draws, for 10
steps: the loss terms of step 1 and D after step 1 within 1e-4 (relative); G after
step 1, the losses of step 2 and everything at steps 5 and 10 within 1e-4 or
SPREAD_FACTOR times the official code's own float32 spread, whichever is larger (the
fixture records the official run's distance to itself with 2 threads, without oneDNN
and from parameters moved by one ulp); and the step-1 gradients of G and D in float64
within 1e-9 of the official code's in float64.

Why the float32 spread: on three of the four settings it is 4e-4 .. 2e-3 for G after
step 1 (one ReLU input within float32 rounding of 0 decides a gradient element, and
Adam's first step ``lr * g / |g|`` spreads that over every small gradient element), so
a fixed 1e-4 is a bar the official code does not meet against itself; the float64
gradients (ours vs the official, 3.6e-13 measured) show that the two compute the same
thing. docs/official-mode.md has the numbers. What is still open: ``LATER_OPEN`` below.
"""

import functools
import json

import numpy as np
import pytest
from conftest import IN_REPO_FIXTURES

from shiftnet_jax import official
from shiftnet_jax.train import official_options

COMMON = np.load(IN_REPO_FIXTURES / "trajectory_common.npz")
SETTINGS = ("paper", "rect_lsgan", "wgan_gp", "batch_norm", "res")
SETTINGS = tuple(s for s in SETTINGS if (IN_REPO_FIXTURES / f"trajectory_{s}.npz").exists())
LOSSES = ("G_GAN", "G_L1", "D", "style", "content", "tv", "G_L1_m")
# Beyond step 1's losses: our distance to the official run may be this many times the
# official run's own float32 spread (the largest distance of its 2-thread, no-oneDNN and
# one-ulp runs to it; chaos and rounding-decided ReLUs: both are rounding).
SPREAD_FACTOR = 4.0
# Float64 gradients of step 1, ours vs the official code's (measured: <= 3.6e-13),
# relative to max(|reference|, FLOAT64_FLOOR x the net's largest |reference|): wgan_gp's
# last D bias has gradient 0 exactly (mean D(fake) - mean D(real) does not depend on it).
FLOAT64_BAR = 1e-9
FLOAT64_FLOOR = 1e-6


def _bf16(bits):
    return (bits.astype(np.uint32) << 16).view(np.float32)


def images(steps, batch):
    """(steps, batch, 3, 256, 256) in [-1, 1]: step t takes images (batch t + i) % 4."""
    u8 = COMMON["images_u8"]
    index = (np.arange(steps)[:, None] * batch + np.arange(batch)[None]) % len(u8)
    return (u8[index] / 127.5 - 1).astype(np.float32)


@functools.lru_cache(maxsize=None)
def fixture(setting):
    z = np.load(IN_REPO_FIXTURES / f"trajectory_{setting}.npz")
    g_names = [k[len("g_step1/"):] for k in z.files if k.startswith("g_step1/")]
    # Initial G: the setting's own tensors (shapes of its variant), else the common ones,
    # else (buffers) the setting's.
    g0 = {n: _bf16(z[f"g_init_own/{n}"]) if f"g_init_own/{n}" in z.files
          else _bf16(COMMON[f"g_init/{n}"]) if f"g_init/{n}" in COMMON.files
          else z[f"g_init_buffers/{n}"] for n in g_names}
    d0 = {k[len("d_init/"):]: z[k] for k in z.files if k.startswith("d_init/")}
    return z, g0, d0


def masks(setting, steps, batch, size=256):
    z, _, _ = fixture(setting)
    n = size // 2 - 8    # fineSize // 2 - 2 * overlap
    m = np.zeros((steps, batch, 1, size, size), bool)
    for t, (top, left) in enumerate(z["rand_tl"]):
        m[t, :, :, top:top + n, left:left + n] = True
    return m


@functools.lru_cache(maxsize=None)
def ours(setting):
    z, g0, d0 = fixture(setting)
    options = json.loads(str(z["meta_options"]))
    options.update(ngf=int(COMMON["meta_ngf"]), ndf=int(COMMON["meta_ndf"]))
    x = images(*z["gp_alpha"].shape[:2])
    vgg = {k[len("vgg/"):]: COMMON[k] for k in COMMON.files if k.startswith("vgg/")}
    snapshots = [int(s) for s in COMMON["meta_snapshots"]]
    return official.train_steps(g0, d0, x, masks(setting, *x.shape[:2]), options,
                                vgg16_state_dict=vgg, snapshots=snapshots,
                                replay={"rand_tl": z["rand_tl"], "gp_alpha": z["gp_alpha"]})


def official_g(setting, step):
    """The official G after ``step`` (every SUBSET-th element after step 1), flat."""
    z, g0, _ = fixture(setting)
    sub = 1 if step == 1 else int(COMMON["meta_subset"])
    return {n: g0[n].ravel()[::sub] + z[f"g_step{step}/{n}"].astype(np.float32)
            for n in g0 if z[f"g_step{step}/{n}"].dtype.kind == "f"}


def errors(setting, step):
    """(G errors, D errors, official G spread, official D spread) at ``step``."""
    z, g0, d0 = fixture(setting)
    g, d, _ = ours(setting)
    sub = 1 if step == 1 else int(COMMON["meta_subset"])
    ref_g = official_g(setting, step)
    ours_g = {n: np.asarray(g[step][n]).ravel()[::sub] for n in ref_g}
    init_g = {n: g0[n].ravel()[::sub] for n in ref_g}
    ref_d = {k[len(f"d_step{step}/"):]: z[k] for k in z.files if k.startswith(f"d_step{step}/")}
    g_err = official.state_dict_errors(ours_g, ref_g, init_g, official.parameter_names(g0))
    d_err = official.state_dict_errors(d[step], ref_d, d0, official.parameter_names(ref_d))
    spread = {net: {m: float(z[f"spread_f32/{net}_{m}/{step}"]) for m in ("max_rel", "rel_change")}
              for net in ("g", "d")}
    return g_err, d_err, spread["g"], spread["d"]


def loss_bound(z, name, step):
    """What our loss term ``name`` at ``step`` may differ by from the official one."""
    ref = z[f"losses/{name}"][step - 1]
    return max(SPREAD_FACTOR * z[f"losses_spread/{name}"][step - 1], 1e-4 * abs(ref), 1e-9)


def step_1_inputs(setting):
    """(image (N, 3, H, W), mask (N, 1, H, W), replay) of step 1."""
    z, _, _ = fixture(setting)
    x = images(*z["gp_alpha"].shape[:2])
    return x[0], masks(setting, *x.shape[:2])[0], {"rand_tl": z["rand_tl"][0],
                                                   "gp_alpha": z["gp_alpha"][0]}


# Steps 5 and 10: not yet within SPREAD_FACTOR x the official float32 spread for every
# setting and term (not strict: the settings that pass show as XPASS).
LATER_OPEN = pytest.mark.xfail(strict=False, reason="open: steps 5/10 exceed 4x the official "
                               "float32 spread for some terms (issue 16)")


@pytest.mark.parametrize("setting", SETTINGS)
def test_loss_terms_of_step_1_match_the_official_code(setting):
    z, _, _ = fixture(setting)
    _, _, losses = ours(setting)
    for name in LOSSES:
        np.testing.assert_allclose(losses[name][0], z[f"losses/{name}"][0], rtol=1e-4,
                                   atol=1e-9, err_msg=f"{setting} {name} step 1")


@pytest.mark.parametrize("setting", SETTINGS)
def test_discriminator_after_step_1_matches_the_official_code(setting):
    _, d_err, _, _ = errors(setting, 1)
    assert d_err["max_rel"] <= 1e-4, d_err


@pytest.mark.parametrize("setting", SETTINGS)
def test_loss_terms_of_step_2_lie_within_the_official_codes_float32_spread(setting):
    z, _, _ = fixture(setting)
    _, _, losses = ours(setting)
    for name in LOSSES:
        error = abs(losses[name][1] - z[f"losses/{name}"][1])
        assert error <= loss_bound(z, name, 2), (setting, name, error, z[f"losses/{name}"][1])


@pytest.mark.parametrize("setting", SETTINGS)
def test_generator_after_step_1_lies_within_the_official_codes_float32_spread(setting):
    g_err, _, g_spread, _ = errors(setting, 1)
    assert g_err["max_rel"] <= max(1e-4, SPREAD_FACTOR * g_spread["max_rel"]), (g_err, g_spread)


def float32_bar_loosened(setting):
    """Whether the official float32 spread sets G's step-1 bar above 1e-4."""
    z, _, _ = fixture(setting)
    return SPREAD_FACTOR * float(z["spread_f32/g_max_rel/1"]) > 1e-4


# Where the float32 bar is loosened, float64 keeps the comparison strict (one compile
# each, ~30 s on 2 loaded cores: not run where the float32 bar is 1e-4 already).
FLOAT64_SETTINGS = [s for s in SETTINGS if float32_bar_loosened(s)]


@pytest.mark.parametrize("setting", FLOAT64_SETTINGS)
def test_step_1_gradients_in_float64_match_the_official_code_in_float64(setting):
    """Free of float32 rounding, the two compute the same gradients (G's through both
    passes, the guidance and the updated D; D's with the gradient penalty)."""
    z, g0, d0 = fixture(setting)
    options = json.loads(str(z["meta_options"]))
    vgg = {k[len("vgg/"):]: COMMON[k] for k in COMMON.files if k.startswith("vgg/")}
    image, mask, replay = step_1_inputs(setting)
    g, d = official.step_gradients(g0, d0, image, mask, options, vgg16_state_dict=vgg,
                                   replay=replay, dtype="float64")
    sub = int(z["meta_grad_subset"])
    for net, ours_grad, state in (("g", g, g0), ("d", d, d0)):
        names = official.parameter_names(state)
        floor = FLOAT64_FLOOR * max(np.linalg.norm(z[f"grad64_{net}/{n}"]) for n in names)
        for name in names:
            ref = z[f"grad64_{net}/{name}"]
            mine = ours_grad[name].ravel()[::sub]
            assert mine.dtype == np.float64 and mine.shape == ref.shape
            error = np.linalg.norm(mine - ref) / max(np.linalg.norm(ref), floor)
            assert error <= FLOAT64_BAR, (setting, net, name, error)


@LATER_OPEN
@pytest.mark.parametrize("setting", SETTINGS)
@pytest.mark.parametrize("step", [5, 10])
def test_steps_5_and_10_lie_within_the_official_codes_own_spread(setting, step):
    z, _, _ = fixture(setting)
    _, _, losses = ours(setting)
    for name in LOSSES:
        error = abs(losses[name][step - 1] - z[f"losses/{name}"][step - 1])
        assert error <= loss_bound(z, name, step), (setting, name, step, error)
    g_err, d_err, g_spread, d_spread = errors(setting, step)
    for err, spread, net in ((g_err, g_spread, "G"), (d_err, d_spread, "D")):
        for metric in ("max_rel", "rel_change"):
            bound = max(SPREAD_FACTOR * spread[metric], 1e-4)
            assert err[metric] <= bound, (setting, net, step, metric, err[metric], spread[metric])


def test_the_discount_template_is_the_official_one_off_by_one():
    t = official_options.discount_template({"fineSize": 256, "overlap": 4, "discounting": 1})
    assert t.shape == (120, 120)
    assert t[0, 60] == 1.0 and t[60, 0] == 1.0              # top and left edges: 1
    np.testing.assert_allclose(t[119, 60], 0.9, rtol=1e-6)  # bottom edge: 0.9
    np.testing.assert_allclose(t[60, 60], 0.9 ** 60, rtol=1e-5)


def test_unknown_and_unsupported_options_are_one_line_errors():
    with pytest.raises(ValueError, match="unknown official option"):
        official_options.resolve({"lamda_A": 100})
    with pytest.raises(ValueError, match="re_avg_gan"):
        official_options.resolve({"gan_type": "re_avg_gan"})
    assert official_options.adam_betas(official_options.resolve({"gan_type": "wgan_gp"})) == (0.0, 0.9)
    assert official_options.adam_betas(official_options.resolve({})) == (0.5, 0.999)
