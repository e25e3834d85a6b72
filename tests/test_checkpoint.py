"""Checkpoint folders: ones written before the package moved (commit c1ba24e) still load and
resume; compact float16 ones load from one file or from shards of at most N bytes; ones
from strangers (tests/hostile_folders.py) are one line, in bounded time and memory.

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

import hostile_folders as hostile
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
from tools.bundle_model import reference_input

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
    # Recorded by the pre-move code at XLA's default optimisation level; the suite compiles
    # at level 0 (conftest), which rounds a few float32 sums differently (~1e-7 absolute).
    np.testing.assert_allclose(np.asarray(output), reference["output"], rtol=1e-5, atol=1e-6)


def test_bundled_model_gives_its_recorded_output():
    """The bundled model (float16 shards) on a seeded input with an off-centre hole gives
    the output recorded when tools/bundle_model.py shipped it (tests/data/bundled_reference.npz)."""
    model, variables, config = checkpoint.load_generator(checkpoint.BUNDLED_MODEL)
    assert config["data"]["crop_size"] == 128 and model.num_downs == 7
    image, hole = reference_input(config["data"]["crop_size"])
    assert hole[0, 40:88, 32:96].all() and hole.sum() == 48 * 64   # the recorded one's hole
    output = forward(model, variables, image, hole).output
    recorded = np.load(DATA / "bundled_reference.npz")["output"]
    np.testing.assert_allclose(np.asarray(output), recorded, atol=2e-5)


def test_pre_move_workdir_resumes_with_the_pre_move_losses(tmp_path, reference):
    workdir = tmp_path / "run"
    shutil.copytree(WORKDIR, workdir)
    config = config_of(workdir)
    config.num_steps = 5
    summary = train_and_evaluate(config, workdir)
    assert summary["step"] == 5
    for key in ("l1", "g_loss", "d_loss"):
        np.testing.assert_allclose(summary[key], reference[f"resumed_{key}"], rtol=1e-5)


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
    expected = {f"{name}/kernel": jax.ShapeDtypeStruct(leaf["kernel"].shape, np.float32)
                for name, leaf in tree.items()}
    loaded = checkpoint._load_compact(checkpoint.compact_files(out), expected)
    for name, leaf in tree.items():
        np.testing.assert_array_equal(loaded[name]["kernel"],
                                      leaf["kernel"].astype(np.float16).astype(np.float32))


def test_a_limit_too_small_for_any_shard_is_refused(tmp_path, generator):
    with pytest.raises(ValueError, match="too small"):
        checkpoint.export_compact(tmp_path / "m", KWARGS, generator[1], max_file_bytes=1000)


# ---------------------------------------------------------------- hostile folders (tests/hostile_folders.py)
MAX_SECONDS, MAX_MIB = 2.0, 1024


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("hostile_folders")
    hostile.base_folders(directory)
    return directory


@pytest.fixture(scope="module")
def results(workdir):
    """Every case loaded in a child process (4 GiB address space, ended at 1 GiB resident;
    its peak is reset before each folder), JAX started once for all of them."""
    return dict(zip(hostile.CASES, hostile.run_isolated(*(hostile.build(c, workdir) for c in hostile.CASES))))


@pytest.mark.parametrize("case", list(hostile.CASES))
def test_hostile_folder_is_refused_in_one_line_or_loads(results, case):
    _, outcome, fragment = hostile.CASES[case]
    result = results[case]
    assert result["outcome"] == outcome, result
    assert "\n" not in result["message"] and "Traceback" not in result["message"]
    if fragment is not None:
        assert fragment in result["message"], result
    assert result["seconds"] < MAX_SECONDS and result["peak_mib"] < MAX_MIB, result


def test_checked_loaders_give_the_saved_values(workdir):
    compact, orbax = hostile.base_folders(workdir)
    _, from_npz, _ = checkpoint.load_generator(compact)
    model, from_orbax, cfg = checkpoint.load_generator(orbax)
    assert cfg["step"] == 0 and model.ngf == 4
    with np.load(compact / checkpoint.COMPACT) as z:
        for path, leaf in checkpoint._leaves_with_path(from_npz):
            name = checkpoint._flat_name(path)
            np.testing.assert_array_equal(np.asarray(leaf), z[name].astype(np.float32))
            assert np.asarray(leaf).dtype == np.float32
    # Orbax keeps float32; the compact file rounded to float16: equal after that rounding.
    for (p1, a), (p2, b) in zip(checkpoint._leaves_with_path(from_orbax), checkpoint._leaves_with_path(from_npz)):
        assert p1 == p2
        np.testing.assert_array_equal(np.asarray(a).astype(np.float16).astype(np.float32), np.asarray(b))


def test_bundled_model_passes_the_checks():
    model, _, cfg = checkpoint.load_generator(checkpoint.BUNDLED_MODEL)
    assert cfg["step"] is None and model.ngf == json.loads(
        (checkpoint.BUNDLED_MODEL / "config.json").read_text())["model"]["ngf"]


def test_config_on_a_full_disk_is_one_line_and_keeps_the_old_one(small_fs):
    checkpoint.write_config(small_fs, {"name": "old"})
    with open(small_fs / "filler", "wb", buffering=0) as f:  # fill the rest of the disk
        try:
            while True:
                f.write(b"x" * 4096)
        except OSError:
            pass
    with pytest.raises(ValueError) as e:
        checkpoint.write_config(small_fs, {"name": "new", "pad": "y" * 100_000})
    assert "config.json" in str(e.value) and "No space left on device" in str(e.value)
    assert json.loads((small_fs / "config.json").read_text()) == {"name": "old"}
    assert sorted(p.name for p in small_fs.iterdir()) == ["config.json", "filler"]
