"""Multi-host training, for real: two OS processes on 127.0.0.1 with jax.distributed (CPU
collectives over gloo), one CPU device each, against one process with two devices."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import FAST_COMPILE

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
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("JAX_", "XLA_", "SLURM_", "OMPI_")) or k in keep}
    env.setdefault("JAX_COMPILATION_CACHE_DIR", str(cache))
    env.update(JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1", JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
               XLA_FLAGS=FAST_COMPILE)
    env.update(extra)
    return env


def _train(workdir, steps, env, distributed=None, extra=()):
    distributed = "JAX_PROCESS_ID" in env if distributed is None else distributed
    return subprocess.Popen([sys.executable, "train.py", f"--workdir={workdir}", *TINY, *extra,
                             f"--config.num_steps={steps}", *(["--config.distributed=true"]
                                                             if distributed else [])],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _two_processes(workdir, steps, cache, cluster_env=None, extra=()):
    """Two training processes; ``cluster_env(rank)`` gives a launcher's variables instead
    of JAX's own (``jax.distributed`` then finds the cluster by itself)."""
    if cluster_env is None:
        port = _free_port()
        envs = [_env(cache, JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}", JAX_NUM_PROCESSES="2",
                     JAX_PROCESS_ID=str(i)) for i in range(2)]
    else:
        envs = [_env(cache, **cluster_env(i)) for i in range(2)]
    procs = [_train(workdir, steps, env, distributed=True, extra=extra) for env in envs]
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


@pytest.fixture(scope="module")
def xla_cache(tmp_path_factory):
    """One compilation cache for the module's runs: they all compile the same step."""
    return tmp_path_factory.mktemp("xla_cache")


@pytest.fixture(scope="module")
def single(tmp_path_factory, xla_cache):
    """The reference every test compares with: one process with two devices, 5 steps
    straight (its workdir)."""
    workdir = tmp_path_factory.mktemp("single")
    run = _train(workdir, 5, _env(xla_cache, XLA_FLAGS=f"--xla_force_host_platform_device_count=2 {FAST_COMPILE}"))
    out, err = run.communicate(timeout=480)
    assert run.returncode == 0, err[-3000:]
    return workdir


def test_two_processes_train_like_one_process_with_two_devices_and_resume(single, xla_cache, tmp_path):
    # Two processes, one device each, 3 steps; each reads only its half of the data.
    multi = tmp_path / "multi"
    first = _two_processes(multi, 3, xla_cache)
    assert "done: step 3" in first[0][1] and "done:" not in first[1][1]  # process 0 reports
    assert sorted(p.name for p in (multi / "checkpoints").iterdir()) == ["3"]
    assert (multi / "samples" / "step_0000003.png").is_file()
    expected, got = _losses(single), _losses(multi)
    assert sorted(got) == [1, 2, 3]
    for step in (1, 2, 3):
        for key in KEYS:
            assert got[step][key] == pytest.approx(expected[step][key], rel=1e-5, abs=1e-7), (step, key)
    evals = [r for r in _logged(multi) if "eval/psnr_hole" in r]
    assert len(evals) == 1 and evals[0]["eval/psnr_hole"] > 0

    # Both processes restarted with a longer budget resume from step 3 and continue
    # exactly as the unbroken single-process run.
    second = _two_processes(multi, 5, xla_cache)
    assert "resumed from" in second[0][1] + second[0][2]
    assert sorted(p.name for p in (multi / "checkpoints").iterdir()) == ["3", "5"]
    got = _losses(multi)
    for step in (4, 5):
        for key in KEYS:
            assert got[step][key] == pytest.approx(expected[step][key], rel=1e-5, abs=1e-7), (step, key)
    # The final evaluation is sharded over both processes' test images; same numbers.
    final = [r for r in _logged(multi) if "eval/psnr_hole" in r][-1]
    reference = [r for r in _logged(single) if "eval/psnr_hole" in r][-1]
    for key in ("eval/psnr", "eval/psnr_hole", "eval/ssim", "eval/l1_hole"):
        assert final[key] == pytest.approx(reference[key], rel=1e-4), key


# ------------------------------------------------------------ cluster launchers
# jax.distributed.initialize() with no arguments detects Slurm and Open MPI from
# their variables (jax/_src/clusters/slurm_cluster.py, ompi_cluster.py) and
# derives the coordinator's port from the job id: 61440 + job_id % 4096 (Open
# MPI: of the job id in OMPI_MCA_orte_hnp_uri divided by 4096). The tests pick a
# free port in that range and fake the job id that maps to it.
JOB_PORTS = range(61440, 65536)


def _free_job_port() -> int:
    for port in np.random.default_rng().permutation(JOB_PORTS):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", int(port)))
            except OSError:
                continue
        return int(port)
    raise RuntimeError("no free port in 61440-65535")


def slurm_env(port):
    """What ``srun --ntasks=2`` on one node sets (the variables JAX reads)."""
    return lambda rank: dict(SLURM_JOB_ID=str(port - JOB_PORTS.start), SLURM_STEP_NODELIST="localhost",
                             SLURM_NTASKS="2", SLURM_PROCID=str(rank), SLURM_LOCALID=str(rank),
                             SLURM_STEP_NUM_NODES="1", SLURM_NODEID="0")


def ompi_env(port):
    """What ``mpirun -np 2`` sets (Open MPI 4; the job id is a multiple of 4096)."""
    uri = f"{(port - JOB_PORTS.start) * 4096}.0;tcp://127.0.0.1:{_free_port()}"
    return lambda rank: dict(OMPI_MCA_orte_hnp_uri=uri, OMPI_COMM_WORLD_SIZE="2", OMPI_COMM_WORLD_RANK=str(rank),
                             OMPI_COMM_WORLD_LOCAL_RANK=str(rank), OMPI_COMM_WORLD_LOCAL_SIZE="2",
                             OMPI_COMM_WORLD_NODE_RANK="0")


@pytest.mark.parametrize("launcher", [slurm_env, ompi_env], ids=["slurm", "openmpi"])
def test_cluster_launchers_train_like_one_process_with_two_devices(launcher, single, xla_cache, tmp_path):
    cluster_env = launcher(_free_job_port())
    assert not any(k in cluster_env(0) or k in _env(tmp_path, **cluster_env(0)) for k in
                   ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"))
    # Training only (no samples, no evaluation to compile): the launch is what is tested.
    results = _two_processes(tmp_path / "run", 2, xla_cache, cluster_env,
                             extra=["--config.sample_every=0", "--config.eval_batches=0"])
    assert "done: step 2" in results[0][1] and "done:" not in results[1][1]
    got, reference = _losses(tmp_path / "run"), _losses(single)
    assert sorted(got) == [1, 2]
    for step in (1, 2):
        for key in KEYS:
            assert got[step][key] == pytest.approx(reference[step][key], rel=1e-5, abs=1e-7), \
                (step, key)
