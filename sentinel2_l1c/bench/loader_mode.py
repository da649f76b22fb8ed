"""Patches in flight: loading a fixed set of patches the way a training data loader does.

A data loader keeps several patches in flight, in threads sharing one store or in worker
processes each with its own (PyTorch's DataLoader workers): remote storage can catch up there,
as many requests overlap. For one number of patches in flight the same patches are loaded
from a storage × key; the wall time gives patches per second, each patch's own time the
latency percentiles, and one checksum over every patch's pixels shows that all routes and
concurrencies returned the same data. Worker processes open their loaders and load one
warm-up patch before the clock starts, as the threads' shared loaders did.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import multiprocessing.util
import threading
import time
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

from sentinel2_l1c.errors import DslabError
from sentinel2_l1c.loaders.base import Loader, Patch, checksum
from sentinel2_l1c.records.benchmark import LoaderMeasurement

LOADERS = ("threads", "processes")
Pair = Hashable  # a storage × key (``config.Pair``); picklable for processes
Opener = Callable[[Any], Loader]  # a pair's loader; picklable (a module function or partial)


def timed_load(loader: Loader, patch: Patch) -> tuple[float, str]:
    begin = time.perf_counter()
    pixels = loader.load(patch)
    return time.perf_counter() - begin, checksum(pixels)


def measurement(loader: str, seconds: float, done: list[tuple[float, str]]) -> LoaderMeasurement:
    """Latencies in patch order, and one checksum over the patches' checksums in order."""
    digest = hashlib.sha256("".join(value for _, value in done).encode()).hexdigest()
    return LoaderMeasurement(loader, len(done), seconds, [d[0] for d in done], digest)


def in_threads(loader: Loader, patches: list[Patch], concurrency: int) -> LoaderMeasurement:
    """``concurrency`` threads sharing one opened loader."""
    with ThreadPoolExecutor(concurrency) as pool:
        begin = time.perf_counter()
        done = list(pool.map(partial(timed_load, loader), patches))
        seconds = time.perf_counter() - begin
    return measurement("threads", seconds, done)


# -- worker processes --------------------------------------------------------------------

_loaders: dict[Pair, Loader] = {}  # a worker process's own loaders
_failure: list[str] = []


def _start_worker(
    opener: Opener, pairs: list[Pair], warm_up: Patch, ready: threading.Barrier
) -> None:
    """Open and warm every pair's loader; a failure breaks the barrier and is kept to tell."""
    try:
        for pair in pairs:
            _loaders[pair] = opener(pair)
            _loaders[pair].load(warm_up)
    except Exception as err:  # reported by the parent in one line
        _failure.append(str(err) if isinstance(err, DslabError) else f"{type(err).__name__}: {err}")
        ready.abort()
        return
    multiprocessing.util.Finalize(None, _close_loaders, exitpriority=10)
    try:
        ready.wait()
    except threading.BrokenBarrierError:  # another worker failed: this one stays to answer
        pass


def _close_loaders() -> None:
    for loader in _loaders.values():
        loader.close()


def _load_in_worker(job: tuple[Pair, Patch]) -> tuple[float, str]:
    pair, patch = job
    return timed_load(_loaders[pair], patch)


def _worker_failure(_: object) -> str:
    return _failure[0] if _failure else ""


class WorkerPool:
    """``concurrency`` spawned processes, each with its own loader of every pair."""

    def __init__(self, opener: Opener, pairs: list[Pair], warm_up: Patch, concurrency: int):
        context = multiprocessing.get_context("spawn")  # no forked copies of client threads
        ready = context.Barrier(concurrency + 1)
        self.pool = context.Pool(concurrency, _start_worker, (opener, pairs, warm_up, ready))
        try:
            ready.wait(timeout=120 + 60 * len(pairs))
        except threading.BrokenBarrierError:
            reasons = {r for r in self.pool.map(_worker_failure, range(concurrency * 4)) if r}
            self.close()
            raise DslabError(
                "a loader process could not open its stores: "
                + ("; ".join(sorted(reasons)) or "it did not start in time")
            ) from None

    def measure(self, pair: Pair, patches: list[Patch]) -> LoaderMeasurement:
        begin = time.perf_counter()
        done = self.pool.map(_load_in_worker, [(pair, patch) for patch in patches], chunksize=1)
        return measurement("processes", time.perf_counter() - begin, done)

    def close(self) -> None:
        self.pool.close()
        self.pool.join()

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: Any) -> None:
        if exc[0] is None:
            self.close()
        else:
            self.pool.terminate()
            self.pool.join()
