"""The official training loop, replayed: ``shiftnet_jax.official.train_steps`` against
trajectories of the official PyTorch code (tests/fixtures/trajectory_*.npz, made by
tools/make_trajectory_fixtures.py; keys in tests/fixtures/README.md).

From the same initial G and D, the same batches, masks and random draws, for 10
steps: the bar is the loss terms of steps 1-2 and the parameters after step 1 within
1e-4 (relative), and steps 5 and 10 within a small multiple of the spread that the
official code shows against itself (1 vs 2 torch threads), recorded in the fixture.
What holds today: see ``OPEN`` / ``LATER_OPEN`` below.
"""

import functools
import json

import numpy as np
import pytest
from conftest import IN_REPO_FIXTURES

from shiftnet_jax import official
from shiftnet_jax.train import official_options

COMMON = np.load(IN_REPO_FIXTURES / "trajectory_common.npz")
SETTINGS = ("paper", "rect_lsgan", "wgan_gp", "batch_norm")
SETTINGS = tuple(s for s in SETTINGS if (IN_REPO_FIXTURES / f"trajectory_{s}.npz").exists())
LOSSES = ("G_GAN", "G_L1", "D", "style", "content", "tv", "G_L1_m")
# Steps 5 and 10: our distance to the official run may be this many times the official
# run's own distance to itself with another thread count (chaos: both are rounding).
SPREAD_FACTOR = 4.0


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
    g0 = {n: _bf16(COMMON[f"g_init/{n}"]) if f"g_init/{n}" in COMMON.files
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
    spread = {net: {m: float(z[f"spread/{net}_{m}/{step}"]) for m in ("max_rel", "rel_change")}
              for net in ("g", "d")}
    return g_err, d_err, spread["g"], spread["d"]


# Open (issue 16): with centre holes and InstanceNorm (paper, wgan_gp) our G gradients
# of step 1 differ from the official ones by ~2e-3 (relative) on these noise batches,
# while D's agree to 1e-8..3e-7, the step-1 losses to 2e-5, and rect holes or BatchNorm
# pass the 1e-4 bar. Until that is found, those cases are expected failures (strict: a
# fix makes them fail, so that the marks come off).
OPEN = ("paper", "wgan_gp")
G_OPEN = pytest.mark.xfail(strict=True, reason="open: G's step-1 gradients differ ~2e-3 from "
                           "the official code's with centre holes + InstanceNorm (issue 16)")
G_CASES = [pytest.param(s, marks=G_OPEN) if s in OPEN else s for s in SETTINGS]
# Steps 5 and 10: not yet within SPREAD_FACTOR x the official spread for every setting
# and term (not strict: the settings that pass show as XPASS).
LATER_OPEN = pytest.mark.xfail(strict=False, reason="open: steps 5/10 exceed 4x the official "
                               "1-vs-2-thread spread for some terms (issue 16)")


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


@pytest.mark.parametrize("setting", G_CASES)
def test_loss_terms_of_step_2_match_the_official_code(setting):
    z, _, _ = fixture(setting)
    _, _, losses = ours(setting)
    for name in LOSSES:
        np.testing.assert_allclose(losses[name][1], z[f"losses/{name}"][1], rtol=1e-4,
                                   atol=1e-9, err_msg=f"{setting} {name} step 2")


@pytest.mark.parametrize("setting", G_CASES)
def test_generator_after_step_1_matches_the_official_code(setting):
    g_err, _, _, _ = errors(setting, 1)
    assert g_err["max_rel"] <= 1e-4, g_err


@LATER_OPEN
@pytest.mark.parametrize("setting", SETTINGS)
@pytest.mark.parametrize("step", [5, 10])
def test_steps_5_and_10_lie_within_the_official_codes_own_spread(setting, step):
    z, _, _ = fixture(setting)
    _, _, losses = ours(setting)
    for name in LOSSES:
        ref, ref2 = z[f"losses/{name}"][step - 1], z[f"losses_2threads/{name}"][step - 1]
        bound = max(SPREAD_FACTOR * abs(ref2 - ref), 1e-4 * abs(ref), 1e-9)
        assert abs(losses[name][step - 1] - ref) <= bound, (setting, name, step)
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
