"""Loader worker processes: each fills whole batches in shared memory.

Why processes: a worker *thread* holds the interpreter lock for the Python
between PIL's and NumPy's C calls (the per-image glue: opening the file,
the RNG set-up, the crop arithmetic, the mask), so threads stop scaling at
``1 / share`` cores (Amdahl; the share is measured by
``benchmarks/loader_bench.py``). Processes share no lock: the parent's
only per-batch work is one copy of the finished uint8 batch.

Protocol: the parent maps ``num_workers + prefetch`` slots of one batch each
(uint8 image (B, C, C, 3) then hole (B, C, C, 1)) in one anonymous shared
file that every worker maps too. It sends a worker ``(chunk, slot, first,
count)``; the worker writes the elements of stream positions ``[first, first
+ count)`` into the slot's rows (fewer in evaluation, where unreadable images
are dropped) and answers ``(chunk, slot, rows, warnings, error)``. The parent
yields chunks in order, copies each out (the consumer may keep it: a device
transfer is asynchronous) and gives the slot to the next chunk. Elements are
a pure function of the position, so the batches equal the threaded backends'.

Workers are fresh interpreters (``python -m shiftnet_jax.data.workers``) that
inherit only two pipes and the shared file: unlike multiprocessing's "spawn"
they never re-run the parent's main script, and unlike "fork" they are safe
in a process running JAX's threads. The element function travels with
cloudpickle (closures and classes of a script included). A worker stops on a
``None`` task, when its pipe closes, and when the parent process is gone.
"""

from __future__ import annotations

import mmap
import os
import pickle
import signal
import subprocess
import sys
import tempfile
import warnings
import weakref
from multiprocessing.connection import Connection, wait

import cloudpickle
import numpy as np

_POLL_S = 1.0  # how often a waiting side checks that the other one is alive


class NotPicklable(ValueError):
    """The source or mask function cannot be sent to a worker process."""


def _views(buf, slot: int, batch_size: int, crop_size: int):
    """(image (B, C, C, 3), hole (B, C, C, 1)) uint8 views of slot ``slot`` of ``buf``."""
    n = batch_size * crop_size * crop_size
    base = slot * 4 * n
    image = np.ndarray((batch_size, crop_size, crop_size, 3), np.uint8, buffer=buf, offset=base)
    hole = np.ndarray((batch_size, crop_size, crop_size, 1), np.uint8, buffer=buf, offset=base + 3 * n)
    return image, hole


def _sendable(error: BaseException) -> BaseException:
    """The exception itself if it pickles, else a RuntimeError with its one line."""
    try:
        pickle.loads(pickle.dumps(error))
        return error
    except Exception:
        return RuntimeError(f"{type(error).__name__}: {error}")


def _fill(element, image, hole, first: int, count: int):
    """Elements of positions [first, first + count) into the rows of (image, hole)
    -> (rows, warning messages, error or None)."""
    rows, error = 0, None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        try:
            for pos in range(first, first + count):
                out = element(pos)
                if out is not None:
                    image[rows], hole[rows] = out
                    rows += 1
        except Exception as e:
            error = _sendable(e)
    return rows, [str(w.message) for w in caught], error


def _worker_main(task_fd: int, result_fd: int, shared_fd: int, parent: int):
    """A worker process (see the module docstring)."""
    # Ctrl-C reaches the whole process group: the parent stops gracefully (it saves a
    # checkpoint, then closes us); a worker must not die mid-batch with a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    tasks, results = Connection(task_fd, writable=False), Connection(result_fd, readable=False)
    try:
        path, payload, slots, batch_size, crop_size = tasks.recv()
        sys.path[:] = path  # the parent's: its element may live in a test or a script folder
        element = cloudpickle.loads(payload)
        buf = mmap.mmap(shared_fd, slots * 4 * batch_size * crop_size * crop_size)
    except Exception as e:  # e.g. an import that fails in a fresh interpreter
        results.send((None, None, 0, [], _sendable(e)))
        return
    views = [_views(buf, k, batch_size, crop_size) for k in range(slots)]
    while True:
        try:
            if not tasks.poll(_POLL_S):
                if os.getppid() != parent:  # the parent died without stopping us
                    return
                continue
            task = tasks.recv()
        except (EOFError, OSError):  # the parent closed the pipe
            return
        if task is None:
            return
        chunk, slot, first, count = task
        answer = (chunk, slot, *_fill(element, *views[slot], first, count))
        try:
            results.send(answer)
        except OSError:  # the parent stopped listening (closed early): nothing to report
            return


def _shared_file(nbytes: int):
    """An anonymous file of ``nbytes`` in memory (memfd, else an unlinked temp file)."""
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("shiftnet-loader")
    else:
        fd, path = tempfile.mkstemp(dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
        os.unlink(path)
    os.ftruncate(fd, nbytes)
    return fd


def _shutdown(procs, conns, fd):
    for conn in conns:
        try:
            conn.send(None)
        except OSError:
            pass
        conn.close()
    for p in procs:
        try:
            p.wait(timeout=2 * _POLL_S)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    os.close(fd)


class WorkerPool:
    """``num_workers`` processes computing ``element(pos)`` chunks of ``batch_size``
    positions into shared memory; iterate with :meth:`chunks`."""

    def __init__(self, element, *, num_workers: int, prefetch: int, batch_size: int, crop_size: int):
        try:
            payload = cloudpickle.dumps(element)
        except Exception as e:
            raise NotPicklable(f"the source or mask function cannot go to a worker process "
                               f"({type(e).__name__}: {e})") from None
        self.batch_size, self.crop_size = batch_size, crop_size
        slots = num_workers + prefetch
        nbytes = slots * 4 * batch_size * crop_size * crop_size
        fd = _shared_file(nbytes)
        self._buf = mmap.mmap(fd, nbytes)
        self._views = [_views(self._buf, k, batch_size, crop_size) for k in range(slots)]
        self._procs, self._tasks, self._results = [], [], []
        for _ in range(num_workers):
            task_r, task_w = os.pipe()
            result_r, result_w = os.pipe()
            cmd = [sys.executable, "-m", "shiftnet_jax.data.workers", str(task_r), str(result_w), str(fd),
                   str(os.getpid())]
            self._procs.append(subprocess.Popen(cmd, pass_fds=(task_r, result_w, fd), env=_child_env()))
            os.close(task_r)
            os.close(result_w)
            self._tasks.append(Connection(task_w, readable=False))
            self._results.append(Connection(result_r, writable=False))
        self._finalizer = weakref.finalize(self, _shutdown, self._procs, self._tasks + self._results, fd)
        for conn in self._tasks:
            conn.send((list(sys.path), payload, slots, batch_size, crop_size))
        self._in_flight = [0] * num_workers

    def close(self):
        """Stop the workers and free the shared memory (idempotent)."""
        self._views = []
        self._finalizer()
        try:
            self._buf.close()
        except BufferError:  # a view is still alive: the mapping goes with it
            pass

    def _submit(self, chunk, slot, first, count):
        w = min(range(len(self._tasks)), key=self._in_flight.__getitem__)
        self._tasks[w].send((chunk, slot, first, count))
        self._in_flight[w] += 1

    def _receive(self):
        """The next finished chunks [(chunk, slot, rows, messages, error)], waiting as needed."""
        while True:
            ready = wait(self._results, timeout=_POLL_S)
            if ready:
                out = []
                for conn in ready:
                    w = self._results.index(conn)
                    try:
                        out.append(conn.recv())
                    except EOFError:
                        raise self._died(w) from None
                    self._in_flight[w] -= 1
                return out
            for w, p in enumerate(self._procs):
                if p.poll() is not None:
                    raise self._died(w)

    def _died(self, w):
        code = self._procs[w].wait()
        return RuntimeError(f"loader worker process {w} exited with code {code}")

    def chunks(self, first: int, stop: int):
        """Yields ``(image uint8 (n, C, C, 3), hole uint8 (n, C, C, 1))`` for the positions
        ``[first, stop)`` in chunks of ``batch_size``, in order (n < batch_size when
        elements were dropped, or for the last chunk); closes the pool at the end."""
        starts = iter(range(first, stop, self.batch_size))
        free, done = list(range(len(self._views))), {}
        submitted = received = 0

        def submit():
            nonlocal submitted
            start = next(starts, None)
            if start is None:
                return False
            self._submit(submitted, free.pop(), start, min(self.batch_size, stop - start))
            submitted += 1
            return True

        try:
            while free and submit():
                pass
            while received < submitted:
                while received not in done:
                    for chunk, slot, rows, messages, error in self._receive():
                        if chunk is None:
                            raise error
                        done[chunk] = slot, rows, messages, error
                slot, rows, messages, error = done.pop(received)
                for m in messages:
                    warnings.warn(m, RuntimeWarning, stacklevel=2)
                if error is not None:
                    raise error
                out = tuple(view[:rows].copy() for view in self._views[slot])
                free.append(slot)
                received += 1
                submit()
                yield out
        finally:
            self.close()


def _child_env() -> dict:
    """The parent's environment, with this package importable (``python -m`` needs it
    before the parent's sys.path arrives)."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (root, env.get("PYTHONPATH"))))
    return env
def rebatch(chunks, batch_size: int, keep_partial: bool):
    """Chunks of up to ``batch_size`` rows -> batches of exactly ``batch_size`` rows (and a
    last partial one when ``keep_partial``); full chunks pass through without a copy."""
    images, holes, have = [], [], 0
    for image, hole in chunks:
        if not have and len(image) == batch_size:
            yield image, hole
            continue
        images.append(image)
        holes.append(hole)
        have += len(image)
        while have >= batch_size:
            image, hole = np.concatenate(images), np.concatenate(holes)
            yield image[:batch_size], hole[:batch_size]
            images, holes, have = [image[batch_size:]], [hole[batch_size:]], have - batch_size
    if keep_partial and have:
        yield np.concatenate(images), np.concatenate(holes)


if __name__ == "__main__":
    _worker_main(*map(int, sys.argv[1:5]))
