"""Shared test helpers: the reference fixtures live in ../shared beside the checkout."""

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

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "reference"


def nhwc(x):
    """PyTorch NCHW array -> NHWC."""
    return np.ascontiguousarray(np.moveaxis(np.asarray(x), 1, -1))


@pytest.fixture(scope="session")
def fixtures_dir():
    if not FIXTURES.is_dir():
        pytest.skip(f"reference fixtures not found at {FIXTURES}")
    return FIXTURES


def load_reference(fixtures_dir, name):
    """The npz of one reference run, with arrays converted to NHWC where useful."""
    z = np.load(fixtures_dir / f"shiftnet_ref_{name}.npz")
    return {
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


def key(seed=0):
    """A PRNG key that compiles fast on CPU (threefry initialisation of a whole
    U-Net takes XLA ~10 s to compile on two cores; 'rbg' takes ~2 s)."""
    import jax

    return jax.random.key(seed, impl="rbg")
