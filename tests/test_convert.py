"""``python -m shiftnet_jax.convert`` and loading what it writes."""

import subprocess
import sys

import jax
import numpy as np
import pytest

from shiftnet_jax import checkpoint
from shiftnet_jax.convert import main

from conftest import load_reference


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
