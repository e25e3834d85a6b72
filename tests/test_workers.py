"""Loader worker processes (shiftnet_jax.data.workers): real processes, real photos."""

import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shiftnet_jax.data import loader as data
from shiftnet_jax.data import workers
from shiftnet_jax.errors import UserError
from tests.test_data import ColourSource, ids, loader, same, square_mask, take

ROOT = Path(__file__).resolve().parents[1]


def test_eval_drops_unreadable_images_like_threads_and_forwards_the_warnings():
    src = ColourSource(8, bad={1, 5})
    with pytest.warns(RuntimeWarning, match="colour-5"):
        got = list(loader(src, train=False, batch_size=3, backend="processes", num_workers=2))
    ref = list(loader(src, train=False, batch_size=3, backend="threads"))
    assert [ids(b) for b in got] == [ids(b) for b in ref] == [[0, 2, 3], [4, 6, 7]]
    assert same(got, ref)


def test_a_worker_error_reaches_the_caller():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        it = loader(ColourSource(3, bad={0, 1, 2}), backend="processes", num_workers=2)
        with pytest.raises(UserError, match="no readable image: all 3 of this host.s epoch"):
            next(it)


def test_close_stops_the_workers():
    pool = workers.WorkerPool(data.Elements(ColourSource(5), data._Plan(5, seed=0, train=True, process_index=0,
                                                                          process_count=1),
                                            crop_size=16, load_size=20, train=True, mask_fn=square_mask,
                                            seed=0, scale_range=None),
                              num_workers=2, prefetch=1, batch_size=2, crop_size=16)
    chunks = pool.chunks(0, 10)
    image, hole = next(chunks)
    assert image.shape == (2, 16, 16, 3) and hole.shape == (2, 16, 16, 1)
    chunks.close()
    assert all(p.poll() is not None for p in pool._procs)


def test_uint8_batches_convert_to_the_float_batches():
    src = ColourSource(7)
    raw = take(loader(src, backend="processes", num_workers=2, dtype="uint8"), 3)
    floats = take(loader(src, backend="threads"), 3)
    assert raw[0]["image"].dtype == np.uint8 and raw[0]["hole"].dtype == np.uint8
    assert same([data.to_float(b) for b in raw], floats)


def test_a_script_without_a_main_guard_can_use_worker_processes(tmp_path):
    # multiprocessing's "spawn" would re-run this script in every worker and fail.
    script = tmp_path / "quick.py"
    script.write_text(textwrap.dedent("""
        import numpy as np
        from shiftnet_jax.data import loader, masks

        class Gradient:  # defined in the script: travels to the workers by value
            def __len__(self): return 5
            def __getitem__(self, i): return np.full((30, 40, 3), 40 * i, np.uint8)

        it = loader.make_loader(Gradient(), batch_size=2, crop_size=16, load_size=20, train=True,
                                mask_fn=masks.make_mask_fn("center"), num_workers=2)
        assert it.backend == "processes"
        print(sum(next(it)["image"].shape[0] for _ in range(3)))
    """))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "6"


@settings(max_examples=40, deadline=None)
@given(sizes=st.lists(st.integers(0, 5), max_size=12), batch=st.integers(1, 5), keep=st.booleans())
def test_rebatch_regroups_rows_in_order(sizes, batch, keep):
    starts = np.cumsum([0] + sizes)
    chunks = [(np.arange(a, a + n).reshape(n, 1, 1, 1).astype(np.uint8),) * 2 for a, n in zip(starts, sizes)]
    out = list(workers.rebatch(iter(chunks), batch, keep_partial=keep))
    rows = [int(v) for image, _ in out for v in image[:, 0, 0, 0]]
    total = sum(sizes)
    assert rows == list(range(total if keep else total - total % batch))
    assert all(len(image) == batch for image, _ in out[:-1 if keep else None])


def test_evaluation_decodes_in_full_and_training_at_a_reduced_jpeg_scale(tmp_path):
    from PIL import Image

    from shiftnet_jax.data import masks, sources
    big = np.random.default_rng(0).integers(0, 256, (96, 128, 3), np.uint8).repeat(8, 0).repeat(8, 1)
    Image.fromarray(big).save(tmp_path / "big.jpg", quality=95)  # 768 x 1024
    src = sources.FolderSource(tmp_path)
    kw = dict(crop_size=64, load_size=96, mask_fn=masks.make_mask_fn("center"), seed=0, scale_range=None)
    plan = lambda train: data._Plan(1, seed=0, train=train, process_index=0, process_count=1)  # noqa: E731
    evaluation = data.Elements(src, plan(False), train=False, **kw)
    assert evaluation.min_side is None
    full = data.preprocess(src[0], crop_size=64, load_size=96, train=False)
    assert np.array_equal(evaluation(0)[0], full)  # exactly the array path's pixels
    training = data.Elements(src, plan(True), train=True, **kw)
    assert training.min_side == 96 and src.open_image(0, training.min_side).size == (128, 96)  # 1/8 scale
