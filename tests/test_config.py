"""Configs: loading, command-line overrides, and one-line errors for every bad field or value."""

import subprocess
import sys
from pathlib import Path

import pytest

from shiftnet_jax import config as C

ROOT = Path(__file__).resolve().parents[1]


def sample():
    return C.load_config(ROOT / "configs" / "sample.py")


def test_overrides_are_typed_like_their_defaults():
    c = C.apply_overrides(sample(), [("optim.lr", "1e-4"), ("batch_size", "4"), ("distributed", "true"),
                                     ("data.classes", "butte,canyon"), ("data.mask", "rect:min_size=8"),
                                     ("num_epochs", "2")])
    assert c.optim.lr == 1e-4 and c.batch_size == 4 and c.distributed is True
    assert c.data.classes == ("butte", "canyon") and c.data.mask == "rect:min_size=8"
    assert c.num_epochs == 2.0 and isinstance(c.num_epochs, float)
    C.validate(c)


@pytest.mark.parametrize("key, text, message", [
    ("steps", "2", "unknown config field 'steps' (did you mean num_steps?)"),
    ("optim.learning_rate", "1", "unknown config field 'optim.learning_rate' (the fields of optim: b1, b2, lr"),
    ("data.maks", "center", "did you mean data.mask"),
    ("batch_size", "abc", "config field 'batch_size' takes an integer, got 'abc'"),
    ("batch_size", "2.5", "takes an integer"),
    ("distributed", "maybe", "takes true or false"),
    ("optim.lr", "fast", "takes a number"),
    ("model", "3", "is a group; set one of its fields: model.add_mask2input"),
])
def test_bad_overrides_name_the_field_and_what_it_accepts(key, text, message):
    with pytest.raises(C.ConfigError) as e:
        C.apply_override(sample(), key, text)
    assert message in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("key, text, message", [
    ("loss.gan", "wgan", "'loss.gan' must be one of vanilla, lsgan, hinge, wgan_gp, re_s_gan, re_avg_gan; got 'wgan'"),
    ("compute_dtype", "float16", "must be one of float32, bfloat16"),
    ("model.norm", "group", "must be one of instance, batch"),
    ("data.source", "web", "must be one of sample, folder, paris, tfds, places"),
    ("batch_size", "0", "'batch_size' must be a number >= 1"),
    ("optim.b1", "1.5", "'optim.b1' must lie in [0, 1)"),
    ("model.shift_layer", "9", "'model.shift_layer' must lie in [2, model.num_downs - 1 = 5]"),
    ("data.crop_size", "60", "multiple of 2**model.num_downs = 64"),
    ("data.mask", "blob", "'data.mask': unknown mask kind 'blob'"),
    ("data.mask", "rect:size=3", "'data.mask': unknown option(s) ['size']"),
    ("data.dir", "/no/such/folder", "'data.dir': /no/such/folder is not a folder"),
])
def test_bad_values_name_the_field_and_what_it_accepts(key, text, message):
    c = C.apply_overrides(sample(), [(key, text)])
    with pytest.raises(C.ConfigError) as e:
        C.validate(c)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_every_shipped_config_is_valid():
    for path in sorted((ROOT / "configs").glob("*.py")):
        c = C.load_config(path)
        if c.data.source in ("folder", "paris"):
            c.data.dir = str(ROOT)   # they need a folder; any existing one passes validation
        if (c.loss.style or c.loss.content) and not c.loss.vgg16:   # configs/official.py
            c.loss.vgg16 = str(ROOT / "tests" / "fixtures" / "vgg16_narrow.pth")
        C.validate(c)


def test_broken_config_file_is_one_line(tmp_path):
    (tmp_path / "bad.py").write_text("def get_config():\n    return 1 / 0\n")
    with pytest.raises(C.ConfigError, match=r"bad.py: ZeroDivisionError: division by zero$"):
        C.load_config(tmp_path / "bad.py")
    with pytest.raises(C.ConfigError, match="no such file"):
        C.load_config(tmp_path / "none.py")


def test_train_cli_errors_are_one_line_without_traceback(tmp_path):
    # No JAX work happens before these errors, so each run is quick.
    for args, message in [
        (["--config.steps=2"], "error: unknown config field 'steps' (did you mean num_steps?)"),
        (["--config.batch_size", "x"], "error: config field 'batch_size' takes an integer, got 'x'"),
        (["--config", "configs/nope.py"], "error: config file configs/nope.py: no such file"),
    ]:
        result = subprocess.run([sys.executable, "train.py", f"--workdir={tmp_path}", *args], cwd=ROOT,
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 1, result.stderr
        assert result.stderr.strip() == message
    result = subprocess.run([sys.executable, "train.py", "--bogus"], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 2 and "unrecognised argument '--bogus'" in result.stderr
    assert "Traceback" not in result.stderr
