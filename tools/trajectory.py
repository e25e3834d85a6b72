"""The trajectory fixtures (the official training loop, 10 steps) and how ours is
compared with them.

Shared by ``tests/test_official.py``, ``tests/test_official_float64.py`` and
``tools/trajectory_report.py``. The fixtures are ``tests/fixtures/trajectory_*.npz``,
made by ``tools/make_trajectory_fixtures.py`` (keys in ``tests/fixtures/README.md``).
No torch needed.

Three references per setting, all from the official code:

* its float32 run with 1 thread (``losses/*``, ``g_step*/``, ``d_step*/``) and how far
  its other float32 runs (2 threads, oneDNN off, parameters moved by one ulp) lie from
  it (``spread_f32/*``, ``losses_spread/*``);
* its float64 run (``traj64/*``): the exact trajectory, up to float64 rounding;
* how far all its float32 runs lie from that exact trajectory (``exact_f32/*``,
  ``losses_exact_f32/*``): the official code's own float32 error.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np

from shiftnet_jax import official

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures"
SETTINGS = tuple(s for s in ("paper", "rect_lsgan", "wgan_gp", "batch_norm", "res")
                 if (FIXTURES / f"trajectory_{s}.npz").exists())
LOSSES = ("G_GAN", "G_L1", "D", "style", "content", "tv", "G_L1_m")


def from_bf16_bits(bits):
    """float32 values of bfloat16 bit patterns (uint16): how the initial G is stored."""
    return (bits.astype(np.uint32) << 16).view(np.float32)


@functools.lru_cache(maxsize=None)
def common(folder=FIXTURES):
    """``trajectory_common.npz``: the images, the initial G, VGG16, the metadata."""
    return np.load(Path(folder) / "trajectory_common.npz")


def snapshots():
    """The steps after which the fixtures hold the state dicts (1, 2, 5, 10)."""
    return tuple(int(s) for s in common()["meta_snapshots"])


def load(setting, folder=FIXTURES):
    """(the setting's arrays, initial G state dict, initial D state dict) from ``folder``."""
    z = np.load(Path(folder) / f"trajectory_{setting}.npz")
    shared = common(folder)
    g_names = [k[len("g_step1/"):] for k in z.files if k.startswith("g_step1/")]
    # Initial G: the setting's own tensors (shapes of its variant), else the common ones,
    # else (buffers) the setting's.
    g0 = {n: from_bf16_bits(z[f"g_init_own/{n}"]) if f"g_init_own/{n}" in z.files
          else from_bf16_bits(shared[f"g_init/{n}"]) if f"g_init/{n}" in shared.files
          else z[f"g_init_buffers/{n}"] for n in g_names}
    d0 = {k[len("d_init/"):]: z[k] for k in z.files if k.startswith("d_init/")}
    return z, g0, d0


def images(steps, batch):
    """(steps, batch, 3, 256, 256) in [-1, 1]: step t takes images (batch t + i) % 4."""
    u8 = common()["images_u8"]
    index = (np.arange(steps)[:, None] * batch + np.arange(batch)[None]) % len(u8)
    return (u8[index] / 127.5 - 1).astype(np.float32)


@functools.lru_cache(maxsize=None)
def fixture(setting):
    """:func:`load` from tests/fixtures, once."""
    return load(setting)


def masks(setting, steps, batch, size=256):
    """(steps, batch, 1, size, size) bool: each step's 120x120 hole at its ``rand_tl``."""
    z, _, _ = fixture(setting)
    n = size // 2 - 8    # fineSize // 2 - 2 * overlap
    m = np.zeros((steps, batch, 1, size, size), bool)
    for t, (top, left) in enumerate(z["rand_tl"]):
        m[t, :, :, top:top + n, left:left + n] = True
    return m


def vgg16():
    shared = common()
    return {k[len("vgg/"):]: shared[k] for k in shared.files if k.startswith("vgg/")}


def options(setting):
    z, _, _ = fixture(setting)
    opts = json.loads(str(z["meta_options"]))
    opts.update(ngf=int(common()["meta_ngf"]), ndf=int(common()["meta_ndf"]))
    return opts


@functools.lru_cache(maxsize=None)
def ours(setting, dtype="float32"):
    """Our replay of the setting: (G snapshots, D snapshots, losses) from
    :func:`shiftnet_jax.official.train_steps`."""
    z, g0, d0 = fixture(setting)
    x = images(*z["gp_alpha"].shape[:2])
    return official.train_steps(g0, d0, x, masks(setting, *x.shape[:2]), options(setting),
                                vgg16_state_dict=vgg16(), snapshots=snapshots(),
                                replay={"rand_tl": z["rand_tl"], "gp_alpha": z["gp_alpha"]},
                                dtype=dtype)


def official_g(setting, step):
    """The official float32 G after ``step`` (every ``meta_subset``-th element after step
    1), flat."""
    z, g0, _ = fixture(setting)
    sub = 1 if step == 1 else int(common()["meta_subset"])
    return {n: g0[n].ravel()[::sub] + z[f"g_step{step}/{n}"].astype(np.float32)
            for n in g0 if z[f"g_step{step}/{n}"].dtype.kind == "f"}


def errors(setting, step):
    """Against the official float32 run: (G errors, D errors, official G spread, official
    D spread) at ``step`` (:func:`shiftnet_jax.official.state_dict_errors`' metrics)."""
    z, g0, d0 = fixture(setting)
    g, d, _ = ours(setting)
    sub = 1 if step == 1 else int(common()["meta_subset"])
    ref_g = official_g(setting, step)
    ours_g = {n: np.asarray(g[step][n]).ravel()[::sub] for n in ref_g}
    init_g = {n: g0[n].ravel()[::sub] for n in ref_g}
    ref_d = {k[len(f"d_step{step}/"):]: z[k] for k in z.files if k.startswith(f"d_step{step}/")}
    g_err = official.state_dict_errors(ours_g, ref_g, init_g, official.parameter_names(g0))
    d_err = official.state_dict_errors(d[step], ref_d, d0, official.parameter_names(ref_d))
    spread = {net: {m: float(z[f"spread_f32/{net}_{m}/{step}"]) for m in ("max_rel", "rel_change")}
              for net in ("g", "d")}
    return g_err, d_err, spread["g"], spread["d"]


def exact_errors(setting, step, dtype="float32"):
    """Against the official float64 run (the exact trajectory): {"g": errors, "d":
    errors} of our ``dtype`` run at ``step``, and the official float32 runs' own largest
    errors there ({"g": ..., "d": ...}), on the stored elements (every
    ``meta_traj_subset``-th)."""
    z, g0, d0 = fixture(setting)
    g, d, _ = ours(setting, dtype)
    sub = int(z["meta_traj_subset"])
    mine, official_own = {}, {}
    for net, state, init in (("g", g[step], g0), ("d", d[step], d0)):
        prefix = f"traj64/{net}_step{step}/"
        names = [k[len(prefix):] for k in z.files if k.startswith(prefix)]
        exact = {n: z[prefix + n] for n in names}

        def pick(sd):
            return {n: np.asarray(sd[n], np.float64).ravel()[::sub] for n in names}
        mine[net] = official.state_dict_errors(pick(state), exact, pick(init), names)
        official_own[net] = {m: float(z[f"exact_f32/{net}_{m}/{step}"])
                             for m in ("max_rel", "rel_change")}
    return mine, official_own


def float64_loss_errors(setting):
    """Relative errors of our float64 losses against the official float64 ones, per
    loss (steps,), with |reference| floored at 1e-12 (``tv`` is 0 without tv_weight)."""
    z, _, _ = fixture(setting)
    _, _, losses = ours(setting, "float64")
    return {name: np.abs(losses[name] - z[f"traj64/losses/{name}"])
            / np.maximum(np.abs(z[f"traj64/losses/{name}"]), 1e-12) for name in LOSSES}
