"""Training: learning, resumption after a kill, data parallelism, clear failures."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from shiftnet_jax import checkpoint, saving
from shiftnet_jax.config import default_config
from shiftnet_jax.inference import evaluate, metrics, predict
from shiftnet_jax.train import parallel
from shiftnet_jax.train import step as training
from shiftnet_jax.train.loop import TrainingDiverged, train_and_evaluate

ROOT = Path(__file__).resolve().parents[1]


def tiny_config(**changes):
    c = default_config()
    c.name = "tiny"
    c.model.ngf, c.model.num_downs = 4, 5
    c.discriminator.ndf = 4
    c.data.update(source="sample", load_size=40, crop_size=32, mask="rect", num_workers=2)
    c.batch_size, c.num_steps = 2, 6
    c.log_every, c.sample_every, c.checkpoint_every, c.eval_batches = 1, 0, 3, 0
    for key, value in changes.items():
        node = c
        *path, last = key.split(".")
        for p in path:
            node = node[p]
        node[last] = value
    return c


def read_metrics(workdir):
    lines = (Path(workdir) / "metrics.jsonl").read_text().splitlines()
    return {r["step"]: r for r in map(json.loads, lines) if "l1" in r}


def test_overfitting_a_batch_fills_the_hole():
    config = tiny_config(**{"optim.lr": 2e-3})
    config.model.ngf = 8
    rng = np.random.default_rng(0)
    # Smooth images: a learnable structure the hole can be predicted from.
    yy, xx = np.mgrid[0:32, 0:32] / 31.0
    image = np.stack([np.stack([np.sin(3 * xx + p), np.cos(2 * yy - p), xx * yy * 2 - 1], -1)
                      for p in rng.uniform(0, 3, 4)]).astype(np.float32)
    hole = np.zeros((4, 32, 32, 1), np.float32)
    hole[:, 10:22, 8:20] = 1
    config.batch_size = 4
    mesh = parallel.make_mesh(jax.devices()[:1])
    state = parallel.replicate(training.create_state(config, 32), mesh)
    step = parallel.jit_train_step(config, mesh)
    batch = parallel.shard_batch({"image": image, "hole": hole}, mesh)
    history = []
    for _ in range(150):
        state, scalars = step(state, batch)
        history.append(jax.device_get(scalars))
    generator, _ = training.make_models(config)
    fake = predict.forward(generator, state.generator, batch["image"], batch["hole"]).composite
    filled = float(np.mean(metrics.psnr(fake, image, hole)))
    empty = float(np.mean(metrics.psnr(image * (1 - hole), image, hole)))
    assert history[-1]["l1"] < 0.5 * history[0]["l1"]
    assert filled > empty + 8.0, (filled, empty)


def test_killed_run_resumes_with_identical_losses(tmp_path):
    reference = train_and_evaluate(tiny_config(), tmp_path / "straight")
    assert reference["step"] == 6
    straight = read_metrics(tmp_path / "straight")

    # Start a long run in another process and kill it with SIGTERM.
    killed = tmp_path / "killed"
    cmd = [sys.executable, "train.py", "--config", "configs/sample.py", f"--workdir={killed}"]
    overrides = tiny_config().to_dict()
    for section in ("model", "discriminator"):
        cmd += [f"--config.{section}.{k}={v}" for k, v in overrides[section].items()]
    cmd += [f"--config.data.{k}={v}" for k, v in
            dict(load_size=40, crop_size=32, mask="rect", num_workers=2).items()]
    cmd += ["--config.batch_size=2", "--config.num_steps=100000", "--config.log_every=1",
            "--config.checkpoint_every=100000", "--config.sample_every=0"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if (killed / "metrics.jsonl").exists() and len(read_metrics(killed)) >= 2:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-2000:]
    assert "SIGTERM: saving checkpoint" in out + err
    saved = sorted(int(p.name) for p in (killed / "checkpoints").iterdir() if p.name.isdigit())
    assert saved and saved[-1] >= 2
    resumed_from = saved[-1]

    # Resume to step 6 + resumed_from: the losses continue exactly as an unbroken run.
    longer = tiny_config(num_steps=resumed_from + 3)
    train_and_evaluate(longer, tmp_path / "straight_long")
    train_and_evaluate(longer, killed)
    expected, got = read_metrics(tmp_path / "straight_long"), read_metrics(killed)
    for step in range(resumed_from + 1, resumed_from + 4):
        for key in ("g_loss", "d_loss", "l1", "guidance"):
            assert got[step][key] == pytest.approx(expected[step][key], rel=1e-5, abs=1e-7), \
                (step, key)
    assert straight[1]["l1"] == pytest.approx(expected[1]["l1"], rel=1e-6)


MULTI_DEVICE = textwrap.dedent("""
    import jax, numpy as np
    from shiftnet_jax.train import parallel
    from shiftnet_jax.train import step as training
    from tests.test_train import tiny_config
    assert jax.device_count() == 2
    config = tiny_config()
    config.model.norm = config.discriminator.norm = "batch"   # cross-device statistics
    rng = np.random.default_rng(0)
    batch = {"image": rng.uniform(-1, 1, (4, 32, 32, 3)).astype(np.float32),
             "hole": np.zeros((4, 32, 32, 1), np.float32)}
    batch["hole"][:, 8:20, 6:26] = 1
    results = []
    for devices in (jax.devices()[:1], jax.devices()):
        mesh = parallel.make_mesh(devices)
        state = parallel.replicate(training.create_state(config, 32), mesh)
        step = parallel.jit_train_step(config, mesh)
        losses = []
        for _ in range(3):
            state, scalars = step(state, parallel.shard_batch(batch, mesh))
            losses.append(jax.device_get(scalars))
        results.append((losses, jax.device_get(state.generator), len(state.step.devices())))
    (l1, p1, n1), (l2, p2, n2) = results
    assert (n1, n2) == (1, 2)
    for a, b in zip(l1, l2):
        for k in a:
            np.testing.assert_allclose(a[k], b[k], rtol=1e-4, atol=1e-6, err_msg=k)
    # Biases right before a norm have a true gradient of 0: Adam turns their
    # rounding noise (which differs with the reduction order) into steps of up to
    # lr = 2e-4, so they are left out; everything else must agree.
    # (BatchNorm's running means follow those biases, hence their looser atol.)
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(p1), jax.tree.leaves(p2)):
        collection, module = path[0].key, path[1].key
        if collection == "params" and path[-1].key == "bias" and "norm" in p1["params"][module]:
            continue
        atol = 1e-4 if collection == "batch_stats" else 1e-5
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=atol, err_msg=str(path))
    try:
        parallel.check_batch_size(3, parallel.make_mesh())
    except ValueError as e:
        assert "not divisible by the 2 devices" in str(e)
    else:
        raise AssertionError("no error for batch 3 on 2 devices")
    print("ok")
""")


def test_two_devices_match_one_device():
    env = dict(os.environ, XLA_FLAGS=f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=2",
               JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT))
    result = subprocess.run([sys.executable, "-c", MULTI_DEVICE], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-3000:]


def test_final_eval_metrics_are_eval_py_numbers_on_the_same_checkpoint(tmp_path):
    """One scorer: training's eval/* equal what eval.py reports for the saved checkpoint with
    the same test images, masks and seed."""
    config = tiny_config(num_steps=2, checkpoint_every=2, eval_batches=1)
    summary = train_and_evaluate(config, tmp_path / "run")
    report = evaluate.evaluate(tmp_path / "run", masks=config.data.mask, seed=config.seed,
                               limit=config.batch_size * config.eval_batches,
                               batch_size=config.batch_size, samples=0, progress=False,
                               out_dir=tmp_path / "eval")
    assert report["step"] == 2 and report["num_images"] == 2
    ours = report["overall"]["shiftnet"]
    for key, (region, metric) in {"psnr": ("whole", "psnr"), "psnr_hole": ("hole", "psnr"),
                                  "ssim": ("whole", "ssim"), "l1_hole": ("hole", "l1"),
                                  "l2_hole": ("hole", "l2")}.items():
        np.testing.assert_allclose(summary[f"eval/{key}"], ours[region][metric], rtol=1e-6,
                                   err_msg=key)
    assert summary["eval/l1_hole"] > 0 and summary["eval/input_l1_hole"] > 0


def test_divergence_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    real_jit = parallel.jit_train_step

    def poisoned(config, mesh, parts=None, **kwargs):
        # From the 4th step on, the step reports a NaN generator loss.
        step_fn = real_jit(config, mesh, parts, **kwargs)

        def step(state, batch):
            state, scalars = step_fn(state, batch)
            bad = jax.numpy.where(state.step >= 4, jax.numpy.nan, scalars["g_loss"])
            return state, {**scalars, "g_loss": bad}
        return step

    monkeypatch.setattr(parallel, "jit_train_step", poisoned)
    config = tiny_config(checkpoint_every=2, log_every=2, num_steps=20)
    with pytest.raises(TrainingDiverged, match="g_loss became nan.*last good checkpoint"):
        train_and_evaluate(config, tmp_path)
    saved = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir())
    assert saved == [2]


def test_cli_errors_are_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "train.py", "--config", "configs/sample.py", f"--workdir={tmp_path}",
         "--config.data.source=folder", f"--config.data.dir={tmp_path / 'none'}"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    assert result.stderr.strip().startswith("error:") and "Traceback" not in result.stderr


def test_a_complete_run_says_so_in_one_line(tmp_path, capsys):
    from shiftnet_jax.train.loop import run_from_command_line

    overrides = [("model.ngf", "4"), ("model.num_downs", "5"), ("discriminator.ndf", "4"),
                 ("data.load_size", "40"), ("data.crop_size", "32"), ("data.num_workers", "2"),
                 ("batch_size", "2"), ("num_steps", "2"), ("log_every", "1"), ("sample_every", "0"),
                 ("checkpoint_every", "2"), ("eval_batches", "0")]
    assert run_from_command_line("configs/sample.py", overrides, str(tmp_path)) == 0
    assert "done: step 2" in capsys.readouterr().out
    before = (tmp_path / "metrics.jsonl").read_text()
    # The same command again: resumed at its last step, it trains nothing and says so.
    assert run_from_command_line("configs/sample.py", overrides, str(tmp_path)) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"already complete: {tmp_path} is at step 2 of 2; nothing trained (a larger "
        "--config.num_steps trains on, another --workdir starts afresh)"]
    assert (tmp_path / "metrics.jsonl").read_text() == before
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["2"]


@pytest.mark.parametrize("when", ["before", "while"])
def test_a_full_disk_is_one_line_and_the_last_checkpoint_stays(make_small_fs, monkeypatch, capfd, when):
    """Checkpoint 4 does not fit: refused before writing ("before"), or the write itself fails
    in Orbax's background threads ("while", the free-space check disabled). Either way one
    error, no traceback on stderr, no partial folder, and checkpoint 2 resumes."""
    workdir = make_small_fs("1600k") / "run"     # one checkpoint of the tiny model (0.9 MB) fits
    train_and_evaluate(tiny_config(num_steps=2, checkpoint_every=2), workdir)
    capfd.readouterr()
    if when == "while":
        monkeypatch.setattr(saving, "_state_bytes", lambda state: 0)
    with pytest.raises(checkpoint.CheckpointWriteError) as e:
        train_and_evaluate(tiny_config(num_steps=4, checkpoint_every=2), workdir)
    message = str(e.value)
    assert "\n" not in message and "cannot write checkpoint 4" in message, message
    assert "space" in message and "the last complete checkpoint: step 2, intact" in message, message
    assert "Traceback" not in capfd.readouterr().err
    assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == ["2"]
    monkeypatch.undo()
    mngr = checkpoint.manager(workdir, create=False)
    state = training.create_state(tiny_config(), 32)
    assert checkpoint.restore(mngr, target=state)[0] == 2
    mngr.close()
