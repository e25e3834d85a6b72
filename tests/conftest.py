"""Shared test helpers and the reference fixtures.

Two sets of reference fixtures: a small one committed in tests/fixtures (always
there, made by tools/make_reference_fixture.py) and the larger 256x256 one in
../shared beside the checkout (present on the project's machines only).
"""

import os
import tempfile
from pathlib import Path

import numpy as np
import pytest

# Many tests compile the same tiny programs, in this process and in the train.py /
# eval.py processes they start: one persistent XLA cache for the whole run (set
# before JAX is imported, and inherited by subprocesses) compiles each once.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="shiftnet_xla_cache_")
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"

# The suite's programs are tiny and compiled once each, so compiling dominates its time:
# LLVM's optimisation level 0 halves XLA:CPU's compile time (a tiny training step: 36 s ->
# 17 s on 2 loaded cores), and XLA:CPU's older loop emitters instead of its fusion
# emitters cut it to a third again (that step on a quiet machine: 10.0 s -> 3.5 s), both
# leaving the results as they are (that step's losses are equal to 7 digits; the fusion
# emitters make large programs run faster, which tiny ones do not need). Inherited by the
# train.py / eval.py processes the tests start; a test that sets XLA_FLAGS itself adds
# FAST_COMPILE.
FAST_COMPILE = "--xla_backend_optimization_level=0 --xla_cpu_use_fusion_emitters=false"
if "--xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {FAST_COMPILE}".strip()

# Several workers run at once (pytest-xdist): on a GPU machine none may take 75 % of the
# GPU's memory up front.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

# After the cache variables: tools.parity imports JAX. nhwc is re-exported to the tests.
from tools.parity import gradient_errors, nhwc  # noqa: E402, F401

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "reference"
IN_REPO_FIXTURES = Path(__file__).resolve().parent / "fixtures"
PARITY_SETS = {"in-repo": IN_REPO_FIXTURES, "shared": FIXTURES}


@pytest.fixture(scope="session")
def fixtures_dir():
    if not FIXTURES.is_dir():
        pytest.skip(f"reference fixtures not found at {FIXTURES}")
    return FIXTURES


@pytest.fixture(scope="session", params=list(PARITY_SETS))
def parity_dir(request):
    """Each reference fixture set in turn: the in-repo one must exist (a missing
    file fails the test); the shared one is skipped when ../shared is absent."""
    path = PARITY_SETS[request.param]
    if request.param == "shared" and not path.is_dir():
        pytest.skip(f"larger reference fixtures not found at {path} (shared/ beside the "
                    "checkout); the in-repo fixture still ran")
    return path


def load_reference(fixtures_dir, name):
    """The npz of one reference run, with arrays converted to NHWC where useful."""
    z = np.load(fixtures_dir / f"shiftnet_ref_{name}.npz")
    size = int(z["meta_size"])
    return {
        "ngf": int(z["meta_ngf"]),
        # Older fixtures (256x256) predate meta_num_downs; the U-Net runs down to 1x1.
        "num_downs": int(z["meta_num_downs"]) if "meta_num_downs" in z.files
        else size.bit_length() - 1,
        "image": nhwc(z["input_gt"]),
        "hole": nhwc(z["mask"]).astype(np.float32),
        "input_masked": nhwc(z["input_masked"]),
        "feature_mask": z["feature_mask"].astype(bool),
        "shift_in": nhwc(z["shift_in"]),
        "shift_out": nhwc(z["shift_out"]),
        "output": nhwc(z["output"]),
        "loss_weights": nhwc(z["loss_weights"]),
        "state": {k[len("state/"):]: z[k] for k in z.files if k.startswith("state/")},
        "grad": {k[len("grad/"):]: z[k] for k in z.files if k.startswith("grad/")},
    }


def tiny_checkpoint(path) -> Path:
    """An untrained ngf-4, 5-level generator saved as a checkpoint at ``path`` (sides
    multiples of 32, working size 64)."""
    import jax
    import jax.numpy as jnp

    from shiftnet_jax import checkpoint
    from shiftnet_jax.nets.generator import ShiftNetGenerator

    model = ShiftNetGenerator(ngf=4, num_downs=5)
    variables = jax.jit(model.init)(key(), jnp.zeros((1, 64, 64, 3)), jnp.zeros((1, 64, 64, 1)))
    checkpoint.export_generator(path, {"ngf": 4, "num_downs": 5}, variables,
                                config={"data": {"crop_size": 64, "load_size": 72}})
    return Path(path)


def key(seed=0):
    """A PRNG key that compiles fast on CPU (threefry initialisation of a whole
    U-Net takes XLA ~10 s to compile on two cores; 'rbg' takes ~2 s)."""
    import jax

    return jax.random.key(seed, impl="rbg")


def assert_gradients_match(grads, expected, tol: float = 1e-3):
    """Whole gradient within ``tol`` relative, and each tensor within ``tol`` of
    max(|ref|, 1e-2 * largest |ref|): biases right before a norm have a true
    gradient of zero, and their recorded values are rounding noise (see the
    fixtures' README)."""
    whole, worst, where = gradient_errors(grads, expected)
    assert whole < tol, whole
    assert worst < tol, (where, worst)


@pytest.fixture
def small_fs(make_small_fs):
    """A 256 KB tmpfs mounted for the test (where root may mount), to fill the disk for real."""
    return make_small_fs("256k")


@pytest.fixture
def make_small_fs(tmp_path):
    """``make_small_fs("1600k")``: a tmpfs of that size mounted for the test (where root may
    mount; skipped with the reason elsewhere), unmounted after it."""
    import subprocess

    mounts = []

    def make(size: str):
        mount = tmp_path / f"small_fs_{len(mounts)}"
        mount.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)],
                              capture_output=True, text=True, check=False)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a small tmpfs here ({done.stderr.strip()[:80] or 'not root'})")
        mounts.append(mount)
        return mount

    yield make
    for mount in mounts:
        subprocess.run(["umount", "-l", str(mount)], check=False)


# The slowest files first (seconds of work on 2 cores, 2026-12-01): with one file per
# worker (pytest-xdist, --dist loadfile) they start at once rather than last, so no worker
# is left alone with a long file at the end. The rest keep their order.
SLOW_FIRST = ("test_paper.py", "test_multihost.py", "test_official.py", "test_export.py",
              "test_official_float64.py",
              "test_shipped_configs.py", "test_train.py", "test_learning.py", "test_checkpoint.py",
              "test_parity.py", "test_model.py", "test_image_io.py", "test_variants_parity.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


def pytest_xdist_auto_num_workers(config):
    """``-n auto``: one worker more than cores (``--maxprocesses`` caps it). Much of a worker's
    time is spent waiting on a train.py process it started, a browser or a child's timeout;
    a third worker fills those gaps on two cores."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (cores or 1) + 1
