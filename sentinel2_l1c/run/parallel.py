"""Work in parallel: copies in a thread pool that stop at the first failure, and Dask tasks
in batches that record progress as they go (on the engine of ``dask_engine``)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Executor
from typing import Any

from sentinel2_l1c.run.progress import progress_bar


def run_parallel[T](pool: Executor, function: Callable[[T], Any], items: Iterable[T]) -> None:
    """Run ``function`` on every item in ``pool``; on the first failure cancel what has not
    started, so an interrupted copy stops promptly instead of finishing the queue."""
    futures = [pool.submit(function, item) for item in items]
    try:
        for future in futures:
            future.result()
    except BaseException:
        for future in futures:
            future.cancel()
        raise


def compute_in_batches[T](
    function: Callable[[T], Any],
    items: list[T],
    *,
    parallel: int,
    label: str,
    show_progress: bool,
    after_batch: Callable[[list[T], list[Any]], None] | None = None,
) -> list[Any]:
    """``function`` over ``items`` as Dask tasks, a few per ``parallel`` task slot at a time
    (on the engine of the caller's ``DaskEngine.running``).

    Batches bound memory and let ``after_batch(items, results)`` record progress, so an
    interrupted run keeps what finished. Returns the results in order.
    """
    import dask

    size = 4 * parallel
    results: list[Any] = []
    running = _Running()
    with progress_bar(len(items), label, show_progress) as bar:
        bar.update(0)
        for start in range(0, len(items), size):
            batch = items[start : start + size]
            tasks = [dask.delayed(running.call)(function, item) for item in batch]
            try:
                outcome = list(dask.compute(*tasks))
            except Exception:
                running.wait_until_idle()
                raise
            if after_batch is not None:
                after_batch(batch, outcome)
            results += outcome
            bar.update(start + len(batch))
    return results


class _Running:
    """Counts the tasks running in this process's threads. Dask raises a task's error at once,
    while the batch's other tasks go on in their threads; waiting for them means a command
    that fails returns only after they ended and removed their temporary outputs. (Sent to
    worker processes it starts afresh there: tasks elsewhere are theirs to finish.)"""

    def __init__(self) -> None:
        self._count = 0
        self._changed = threading.Condition()

    def __reduce__(self) -> tuple[type[_Running], tuple[()]]:
        return _Running, ()

    def call[T, R](self, function: Callable[[T], R], item: T) -> R:
        with self._changed:
            self._count += 1
        try:
            return function(item)
        finally:
            with self._changed:
                self._count -= 1
                self._changed.notify_all()

    def wait_until_idle(self) -> None:
        with self._changed:
            self._changed.wait_for(lambda: self._count == 0)
