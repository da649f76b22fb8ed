"""Dask tasks in batches: a failure reaches the caller only after the batch's other tasks in
this process ended (a command must not return while its threads still write)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from sentinel2_l1c.run.dask_engine import DaskEngine
from sentinel2_l1c.run.parallel import compute_in_batches


def test_a_failed_task_waits_for_the_others_of_its_batch(tmp_path: Path) -> None:
    def task(item: int) -> int:
        if item == 0:
            raise OSError("disk full")
        time.sleep(0.5)
        (tmp_path / f"{item}.done").touch()
        return item

    with DaskEngine(workers=3).running(), pytest.raises(OSError, match="disk full"):
        compute_in_batches(task, [0, 1, 2], parallel=3, label="t", show_progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["1.done", "2.done"]


def test_results_come_in_order_and_batches_are_recorded() -> None:
    recorded: list[list[int]] = []
    with DaskEngine(workers=2).running():
        results = compute_in_batches(
            lambda n: n * n, list(range(20)), parallel=2, label="t", show_progress=False,
            after_batch=lambda batch, _: recorded.append(batch),
        )  # fmt: skip
    assert results == [n * n for n in range(20)]
    assert [len(b) for b in recorded] == [8, 8, 4]
