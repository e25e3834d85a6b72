"""Checkpoints written before the package moved (commit c1ba24e) still load and resume.

``tests/data/workdir_c1ba24e/`` is a training workdir that the code of commit
c1ba24e (the last one before the regrouping by role) wrote: a ``res`` generator,
ngf 2, 5 levels, 32x32 crops, 4 steps of ``source="sample"``. Made by
``tests/data/workdir_c1ba24e.md``'s recipe; ``workdir_c1ba24e_reference.npz`` holds
what that code computed from it (and from the bundled demo model): the generator
output on a fixed input, and the losses of step 5 after resuming the workdir.
"""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from shiftnet_jax import checkpoint
from shiftnet_jax.config import default_config
from shiftnet_jax.inference.predict import forward
from shiftnet_jax.train.loop import train_and_evaluate

DATA = Path(__file__).resolve().parent / "data"
WORKDIR = DATA / "workdir_c1ba24e"


@pytest.fixture(scope="module")
def reference():
    with np.load(DATA / "workdir_c1ba24e_reference.npz") as z:
        return dict(z)


def config_of(workdir):
    """The run's config.json as a ConfigDict (JSON lists back to tuples)."""
    config = default_config()
    for key, value in json.loads((Path(workdir) / checkpoint.CONFIG_FILE).read_text()).items():
        if isinstance(value, dict):
            for field, v in value.items():
                config[key][field] = tuple(v) if isinstance(v, list) else v
        else:
            config[key] = value
    return config


def test_pre_move_workdir_loads_with_the_same_parameters_and_output(reference):
    model, variables, config = checkpoint.load_generator(WORKDIR)
    assert config["step"] == 4 and model.variant == "res"
    assert "res" in variables["params"]["shift_level"]   # the ResBlock kept its name
    output = forward(model, variables, reference["image"], reference["hole"]).output
    np.testing.assert_array_equal(np.asarray(output), reference["output"])


def test_bundled_demo_model_gives_the_pre_move_output(reference):
    model, variables, _ = checkpoint.load_generator(checkpoint.BUNDLED_MODEL)
    output = forward(model, variables, reference["demo_image"], reference["demo_hole"]).output
    np.testing.assert_array_equal(np.asarray(output), reference["demo_output"])


def test_pre_move_workdir_resumes_with_the_pre_move_losses(tmp_path, reference):
    workdir = tmp_path / "run"
    shutil.copytree(WORKDIR, workdir)
    config = config_of(workdir)
    config.num_steps = 5
    summary = train_and_evaluate(config, workdir)
    assert summary["step"] == 5
    for key in ("l1", "g_loss", "d_loss"):
        np.testing.assert_allclose(summary[key], reference[f"resumed_{key}"], rtol=1e-6)
