"""Work in parallel: copies in a thread pool that stop at the first failure, and Dask tasks
in batches that record progress as they go (on the engine of ``dask_engine``)."""

from __future__ import annotations

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
    with progress_bar(len(items), label, show_progress) as bar:
        bar.update(0)
        for start in range(0, len(items), size):
            batch = items[start : start + size]
            outcome = list(dask.compute(*[dask.delayed(function)(item) for item in batch]))
            if after_batch is not None:
                after_batch(batch, outcome)
            results += outcome
            bar.update(start + len(batch))
    return results
