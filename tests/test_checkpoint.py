"""Checkpoints: those written before the package moved (commit c1ba24e) still load and
resume; compact float16 ones load from one file or from shards of at most N bytes.

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

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import key as rbg_key
from hypothesis import given, settings
from hypothesis import strategies as st

from shiftnet_jax import checkpoint
from shiftnet_jax.config import default_config
from shiftnet_jax.inference.predict import forward
from shiftnet_jax.nets.generator import ShiftNetGenerator
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


# ------------------------------------------------------------ compact float16 shards
KWARGS = {"ngf": 4, "num_downs": 5}


@pytest.fixture(scope="module")
def generator():
    model = ShiftNetGenerator(**KWARGS)
    image = jnp.zeros((1, 32, 32, 3))
    variables = jax.jit(model.init)(rbg_key(0), image, jnp.zeros((1, 32, 32, 1)))
    return model, jax.device_get(variables)


def _as_f16(tree):
    return jax.tree.map(lambda x: np.asarray(x, np.float16).astype(np.float32), tree)


def test_shards_stay_within_the_limit_and_load_back(tmp_path, generator):
    model, variables = generator
    limit = 8000   # the up convs' kernels (up to 32 KB in float16) must be cut into pieces
    paths = checkpoint.export_compact(tmp_path / "m", KWARGS, variables, max_file_bytes=limit)
    assert len(paths) > 3
    assert all(p.stat().st_size <= limit for p in paths)
    assert [p.name for p in paths][:2] == ["generator_f16-00000-of-%05d.npz" % len(paths),
                                           "generator_f16-00001-of-%05d.npz" % len(paths)]
    names = [n for p in paths for n in np.load(p).files]
    assert any("::part" in n for n in names)
    loaded_model, loaded, config = checkpoint.load_generator(tmp_path / "m")
    assert config["model"] == KWARGS and loaded_model.ngf == 4
    expected = _as_f16(variables)
    assert jax.tree.structure(loaded) == jax.tree.structure(expected)
    for a, b in zip(jax.tree.leaves(loaded), jax.tree.leaves(expected)):
        np.testing.assert_array_equal(a, b)
    image = jax.random.uniform(jax.random.key(1), (1, 32, 32, 3), minval=-1, maxval=1)
    hole = jnp.zeros((1, 32, 32, 1)).at[:, 8:24, 8:24].set(1)
    forward = jax.jit(model.apply)   # the loaded model has the same architecture
    assert loaded_model == model
    np.testing.assert_array_equal(forward(loaded, image, hole), forward(expected, image, hole))


def test_one_file_without_a_limit(tmp_path, generator):
    _, variables = generator
    paths = checkpoint.export_compact(tmp_path / "m", KWARGS, variables)
    assert [p.name for p in paths] == [checkpoint.COMPACT]
    _, loaded, _ = checkpoint.load_generator(tmp_path / "m")
    for a, b in zip(jax.tree.leaves(loaded), jax.tree.leaves(_as_f16(variables))):
        np.testing.assert_array_equal(a, b)


def test_a_missing_shard_is_one_line(tmp_path, generator):
    _, variables = generator
    paths = checkpoint.export_compact(tmp_path / "m", KWARGS, variables, max_file_bytes=8000)
    paths[1].unlink()
    with pytest.raises(checkpoint.NotACheckpointError, match="missing 1 of") as err:
        checkpoint.load_generator(tmp_path / "m")
    assert "\n" not in str(err.value)


@settings(max_examples=25, deadline=None)
@given(shapes=st.lists(st.lists(st.integers(1, 40), min_size=0, max_size=3), min_size=1,
                       max_size=6),
       limit=st.integers(6000, 40000))
def test_any_arrays_round_trip_through_shards(tmp_path_factory, shapes, limit):
    rng = np.random.default_rng(len(shapes))
    tree = {f"layer_{i}": {"kernel": rng.normal(size=s).astype(np.float32)}
            for i, s in enumerate(shapes)}
    out = tmp_path_factory.mktemp("shards")
    paths = checkpoint.export_compact(out, {}, tree, max_file_bytes=limit)
    assert all(p.stat().st_size <= limit for p in paths)
    _, loaded, _ = checkpoint.load_generator(out)
    for name, leaf in tree.items():
        np.testing.assert_array_equal(loaded[name]["kernel"],
                                      leaf["kernel"].astype(np.float16).astype(np.float32))


def test_a_limit_too_small_for_any_shard_is_refused(tmp_path, generator):
    with pytest.raises(ValueError, match="too small"):
        checkpoint.export_compact(tmp_path / "m", KWARGS, generator[1], max_file_bytes=1000)
