"""Results files: each run gets its own file, even when runs start in the same second."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from sentinel2_l1c.records import result_files


def test_runs_started_in_the_same_second_keep_their_own_results(tmp_path: Path) -> None:
    """Issue 16, item 5: the second run of a second used to overwrite the first's file."""
    started = datetime(2026, 11, 22, 1, 2, 3, tzinfo=UTC)
    paths = [result_files.new_result_file(tmp_path, "stage", started, f"run {n}") for n in range(3)]
    assert [p.name for p in paths] == [
        "stage_2026-11-22_01-02-03.json",
        "stage_2026-11-22_01-02-03_2.json",
        "stage_2026-11-22_01-02-03_3.json",
    ]
    assert [p.read_text() for p in paths] == ["run 0", "run 1", "run 2"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths)
