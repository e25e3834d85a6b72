"""``python -m shiftnet_jax.convert`` and loading what it writes."""

import json
import subprocess
import sys

import jax
import numpy as np
import pytest
from conftest import IN_REPO_FIXTURES, load_reference

from shiftnet_jax import checkpoint, saving
from shiftnet_jax.convert import main


def test_convert_then_load_reproduces_the_reference(fixtures_dir, tmp_path, capsys):
    out = tmp_path / "converted"
    assert main([str(fixtures_dir / "reference_ngf8_center_legacy.pth"), str(out)]) == 0
    model, variables, config = checkpoint.load_generator(out)
    assert config["model"]["ngf"] == 8 and config["step"] == 0
    ref = load_reference(fixtures_dir, "center")
    output = jax.jit(model.apply)(variables, ref["image"], ref["hole"])
    assert np.linalg.norm(output - ref["output"]) / np.linalg.norm(ref["output"]) < 1e-4
    # A second conversion into the same directory must not overwrite it.
    assert main([str(fixtures_dir / "reference_ngf8_center.pth"), str(out)]) == 1
    assert "already holds a checkpoint" in capsys.readouterr().err


def test_cli_refuses_malicious_and_missing_files_in_one_line(fixtures_dir, tmp_path):
    for source in (fixtures_dir / "malicious.pth", tmp_path / "missing.pth"):
        result = subprocess.run(
            [sys.executable, "-m", "shiftnet_jax.convert", str(source), str(tmp_path / "o")],
            capture_output=True, text=True)
        assert result.returncode == 1
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
        assert source.name in result.stderr
    assert not (tmp_path / "o").exists()


def test_load_generator_explains_what_is_wrong(tmp_path):
    with pytest.raises(checkpoint.NotACheckpointError, match="no such directory"):
        checkpoint.load_generator(tmp_path / "nope")
    with pytest.raises(checkpoint.NotACheckpointError, match="not a checkpoint directory"):
        checkpoint.load_generator(tmp_path)
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(checkpoint.NotACheckpointError, match="no checkpoints/"):
        checkpoint.load_generator(tmp_path)


# ---------------------------------------------------------------- bad files: one line, exit 1, nothing written
import hostile_checkpoints as hostile  # noqa: E402


def _reference_state(fixtures_dir):
    return dict(load_reference(fixtures_dir, "center")["state"])


def _convert_fails(path, tmp_path, capsys):
    out = tmp_path / "out"
    assert main([str(path), str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path.name}: ") and err.count("\n") == 1, err
    assert "Traceback" not in err and len(err) <= 330 and err[:-1].isprintable()
    assert not out.exists() and not list(tmp_path.glob(".out.*"))  # no partial output
    return err


@pytest.mark.parametrize("edit, fragment", [
    ("missing", "'model.model.3.weight' is missing"),
    ("scalar", "'model.model.0.weight' has shape (); a conv weight is 4-D"),
    ("shape", "params/down_1/conv/kernel is (3, 3, 8, 16) float32 in the file (after layout "
              "conversion); the model needs (4, 4, 8, 16) float32"),
    ("norm_shape", "params/down_1/norm/scale is (15,) float32"),
    ("dtype", "'model.model.1.model.2.bias' has dtype int64; expected floating point"),
    ("extra", "unexpected entries in the state dict: model.model.9.weight"),
])
def test_convert_checks_keys_shapes_and_dtypes_before_writing(fixtures_dir, tmp_path, capsys,
                                                              edit, fragment):
    state = _reference_state(fixtures_dir)
    if edit == "missing":
        del state["model.model.3.weight"]
    elif edit == "scalar":
        state["model.model.0.weight"] = np.float32(1.0)
    elif edit == "shape":
        state["model.model.1.model.1.weight"] = np.zeros((16, 8, 3, 3), np.float32)
    elif edit == "norm_shape":
        state["model.model.1.model.2.weight"] = np.ones(15, np.float32)
    elif edit == "dtype":
        state["model.model.1.model.2.bias"] = np.zeros(16, np.int64)
    elif edit == "extra":
        state["model.model.9.weight"] = np.zeros(3, np.float32)
    path = tmp_path / f"{edit}.pth"
    hostile.write_state_dict(path, state)
    assert fragment in _convert_fails(path, tmp_path, capsys)


@pytest.mark.parametrize("case", ["deep_tuple", "stride_zero", "two_folders", "long_escape_key"])
def test_convert_refuses_hostile_files_in_one_line(tmp_path, capsys, case):
    _convert_fails(hostile.build(case, tmp_path), tmp_path, capsys)


def test_convert_cli_never_prints_a_traceback(tmp_path):
    path = tmp_path / "scalar.pth"
    hostile.write_state_dict(path, {"model.model.0.weight": np.float32(1.0)})
    result = subprocess.run([sys.executable, "-m", "shiftnet_jax.convert", str(path), str(tmp_path / "o")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("error: scalar.pth: ") and "Traceback" not in result.stderr
    assert not (tmp_path / "o").exists()


def test_convert_into_an_existing_empty_directory(fixtures_dir, tmp_path, capsys):
    out = tmp_path / "empty"
    out.mkdir()
    assert main([str(fixtures_dir / "reference_ngf8_center.pth"), str(out)]) == 0
    assert (out / "config.json").exists() and not list(tmp_path.glob(".empty.*"))
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("keep me")
    assert main([str(fixtures_dir / "reference_ngf8_center.pth"), str(tmp_path / "full")]) == 1
    assert "exists and is not an empty directory" in capsys.readouterr().err
    assert (tmp_path / "full" / "x").read_text() == "keep me"


@pytest.mark.parametrize("when", ["before", "while"])
def test_convert_on_a_full_disk_is_one_line_and_leaves_nothing(make_small_fs, monkeypatch, capfd, when):
    """Refused by the free-space check ("before"), or failing inside Orbax's writer threads
    with the check disabled ("while"): one line naming the output, no traceback, no
    ``.NAME.*.partial`` folder left."""
    disk = make_small_fs("64k")
    if when == "while":
        monkeypatch.setattr(saving, "_state_bytes", lambda state: 0)
    source = IN_REPO_FIXTURES / "reference_ngf2_center.pth"
    assert main([str(source), str(disk / "out")]) == 1
    err = capfd.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"error: cannot write {disk / 'out'} (") and "nothing was left behind" in err, err
    assert list(disk.iterdir()) == []


def test_compat_official_is_recorded_and_loads_to_the_same_model(tmp_path, capsys):
    source = IN_REPO_FIXTURES / "reference_ngf2_center.pth"
    plain, official = tmp_path / "plain", tmp_path / "official"
    assert main([str(source), str(plain)]) == 0
    assert main([str(source), str(official), "--compat", "official"]) == 0
    assert "compat 'official'" in capsys.readouterr().out
    saved = json.loads((official / "config.json").read_text())
    assert saved["compat"] == "official" and "compat" not in json.loads((plain / "config.json").read_text())
    model, variables, config = checkpoint.load_generator(official)
    assert config["compat"] == "official"   # kept for whoever reads the config
    # At inference the official way is our forward for this generator: the same model and arrays.
    plain_model, plain_variables, _ = checkpoint.load_generator(plain)
    assert model == plain_model
    jax.tree.map(np.testing.assert_array_equal, variables, plain_variables)


def test_compat_official_refuses_what_the_official_code_does_not_run(tmp_path, capsys):
    source = str(IN_REPO_FIXTURES / "reference_ngf2_center.pth")
    assert main([source, str(tmp_path / "a"), "--compat", "official", "--feature-hole", "conv"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "feature hole is 'nearest'" in err
    assert main([source, str(tmp_path / "b"), "--compat", "official", "--variant", "patch_soft",
                 "--patch-order", "spatial"]) == 1
    assert "--patch-order reference" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
