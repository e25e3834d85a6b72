"""Checkpoint folders from strangers: every bad one is one line, in bounded time and memory."""

import json

import hostile_folders as hostile
import numpy as np
import pytest

from shiftnet_jax import checkpoint, config

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


def test_saved_config_uses_the_rules_of_the_command_line():
    with pytest.raises(config.ConfigError, match="unknown config group 'modle'"):
        config.check_saved({"modle": {"ngf": 3}})
    with pytest.raises(config.ConfigError, match="'model.shift_tile' takes an integer >= 1 or null"):
        config.check_saved({"model": {"shift_tile": "x"}})
    with pytest.raises(config.ConfigError, match="'optim.lr' takes a finite number"):
        config.check_saved({"optim": {"lr": float("nan")}})
    assert config.check_saved({"step": 3, "source": "x.pth", "model": {"ngf": 8}}).model.ngf == 8


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
