"""Multi-host training, for real: two OS processes on 127.0.0.1 with jax.distributed (CPU
collectives over gloo), one CPU device each, against one process with two devices."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--config=configs/sample.py", "--config.model.ngf=4", "--config.model.num_downs=5",
        "--config.discriminator.ndf=4", "--config.data.load_size=40", "--config.data.crop_size=32",
        "--config.data.num_workers=2", "--config.batch_size=4", "--config.log_every=1",
        "--config.checkpoint_every=3", "--config.sample_every=3", "--config.eval_batches=1"]
KEYS = ("g_loss", "d_loss", "l1", "guidance", "g_adversarial")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(cache, **extra):
    keep = ("JAX_COMPILATION_CACHE_DIR", "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_", "XLA_")) or k in keep}
    env.setdefault("JAX_COMPILATION_CACHE_DIR", str(cache))
    env.update(JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1", JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
               **extra)
    return env


def _train(workdir, steps, env):
    return subprocess.Popen([sys.executable, "train.py", f"--workdir={workdir}", *TINY,
                             f"--config.num_steps={steps}", *(["--config.distributed=true"]
                                                             if "JAX_PROCESS_ID" in env else [])],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _two_processes(workdir, steps, cache):
    port = _free_port()
    procs = [_train(workdir, steps, _env(cache, JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}",
                                         JAX_NUM_PROCESSES="2", JAX_PROCESS_ID=str(i)))
             for i in range(2)]
    results = []
    for p in procs:
        try:
            out, err = p.communicate(timeout=480)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            pytest.fail("a training process hung (a collective run by one process only?)")
        results.append((p.returncode, out, err))
    for rc, out, err in results:
        assert rc == 0, err[-3000:]
    return results


def _logged(workdir):
    return [json.loads(line) for line in (Path(workdir) / "metrics.jsonl").read_text().splitlines()]


def _losses(workdir):
    return {r["step"]: r for r in _logged(workdir) if "l1" in r}


def test_two_processes_train_like_one_process_with_two_devices_and_resume(tmp_path):
    cache = tmp_path / "xla_cache"
    # One process, two devices: the reference run, 5 steps straight.
    single = _train(tmp_path / "single", 5, _env(cache, XLA_FLAGS="--xla_force_host_platform_device_count=2"))
    out, err = single.communicate(timeout=480)
    assert single.returncode == 0, err[-3000:]

    # Two processes, one device each, 3 steps; each reads only its half of the data.
    multi = tmp_path / "multi"
    first = _two_processes(multi, 3, cache)
    assert "done: step 3" in first[0][1] and "done:" not in first[1][1]  # process 0 reports
    assert sorted(p.name for p in (multi / "checkpoints").iterdir()) == ["3"]
    assert (multi / "samples" / "step_0000003.png").is_file()
    expected, got = _losses(tmp_path / "single"), _losses(multi)
    assert sorted(got) == [1, 2, 3]
    for step in (1, 2, 3):
        for key in KEYS:
            assert got[step][key] == pytest.approx(expected[step][key], rel=1e-5, abs=1e-7), (step, key)
    evals = [r for r in _logged(multi) if "eval/psnr_hole" in r]
    assert len(evals) == 1 and evals[0]["eval/psnr_hole"] > 0

    # Both processes restarted with a longer budget resume from step 3 and continue
    # exactly as the unbroken single-process run.
    second = _two_processes(multi, 5, cache)
    assert "resumed from" in second[0][1] + second[0][2]
    assert sorted(p.name for p in (multi / "checkpoints").iterdir()) == ["3", "5"]
    got = _losses(multi)
    for step in (4, 5):
        for key in KEYS:
            assert got[step][key] == pytest.approx(expected[step][key], rel=1e-5, abs=1e-7), (step, key)
    # The final evaluation is sharded over both processes' test images; same numbers.
    final = [r for r in _logged(multi) if "eval/psnr_hole" in r][-1]
    reference = [r for r in _logged(tmp_path / "single") if "eval/psnr_hole" in r][-1]
    for key in ("eval/psnr", "eval/psnr_hole", "eval/ssim", "eval/l1_hole"):
        assert final[key] == pytest.approx(reference[key], rel=1e-4), key
