"""The icechunk format: the Zarr format's pixels in a repository where every tile-year
conversion or append is one commit, a kill -9 anywhere leaves the last commit, and the blocks
can run on threads, worker processes or (job script only here) Slurm."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import icechunk
import numpy as np
import pytest

from sentinel2_l1c import convert_safe_to_zarr, formats
from sentinel2_l1c.convert_safe_to_zarr import ZarrOptions
from sentinel2_l1c.cube.icechunk_repo import (
    BRANCH,
    WORK_BRANCH,
    history,
    open_repository,
    read_store,
)
from sentinel2_l1c.errors import ConfigError
from sentinel2_l1c.run.dask_engine import DaskEngine, SlurmJob
from sentinel2_l1c.s2.bands import BAND_GROUPS, BandGroup
from sentinel2_l1c.s2.listing import list_products
from sentinel2_l1c.s2.product import SafeProduct
from sentinel2_l1c.storage.places import FolderPlace
from tests.helpers import SMALL, Archive, Converted, link_products, store_contents

REPO = Path(__file__).resolve().parents[2]
ICECHUNK = formats.ICECHUNK


#: the kill and cluster tests convert only the 60 m group: the same code paths, a third of
#: the time
ONE_GROUP = (BAND_GROUPS[2],)


def contents(
    repository: Path, band_groups: tuple[BandGroup, ...] = BAND_GROUPS
) -> dict[str, np.ndarray]:
    """Every array of the groups at the last commit of main."""
    return store_contents(read_store(FolderPlace(repository)), band_groups)


def assert_same(first: dict[str, np.ndarray], second: dict[str, np.ndarray]) -> None:
    assert first.keys() == second.keys()
    for key in first:
        np.testing.assert_array_equal(first[key], second[key], err_msg=key)


def convert(
    root: Path, target: Path, fmt: formats.Format = ICECHUNK, **options: object
) -> list[str]:
    summary = convert_safe_to_zarr.convert(
        ZarrOptions(root, target, fmt, layout=SMALL, **options), False
    )  # type: ignore[arg-type]
    return summary.commits


@pytest.fixture(scope="module")
def products(archive: Archive) -> list[SafeProduct]:
    return list_products(archive.root)


@pytest.fixture(scope="module")
def plain(
    converted: Converted, products: list[SafeProduct], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    """Plain Zarr of the first half of the products, and of all of them."""
    out = tmp_path_factory.mktemp("plain")
    half = out / "half-safe"
    link_products(half, products[: len(products) // 2])
    convert(half, out / "half", formats.ZARR)
    return {"half": out / "half", "all": converted.zarr, "half_safe": half}


def test_one_commit_per_conversion_and_append(
    archive: Archive, products: list[SafeProduct], plain: dict[str, Path], tmp_path: Path
) -> None:
    target = tmp_path / "icechunk"
    assert len(convert(plain["half_safe"], target)) == 1
    assert_same(contents(target), store_contents(plain["half"]))
    assert len(convert(archive.root, target)) == 1  # the append
    assert_same(contents(target), store_contents(plain["all"]))
    assert convert(archive.root, target) == []  # nothing new: no commit
    commits = [c for c in history(FolderPlace(target)) if "arrays prepared" not in c.message]
    added = len(products) - len(products) // 2
    assert [c.products_added for c in commits] == [added, len(products) // 2, 0]
    assert commits[0].message.startswith(
        f"35VLH 2024: {added} products added ({products[len(products) // 2].product_id}"
    )
    assert commits[-1].message == "Repository initialized"
    assert convert(archive.root, target, overwrite=True) != []  # a rebuild is a new commit
    assert (
        history(FolderPlace(target))[0].message
        == f"35VLH 2024: rebuilt from {len(products)} products"
    )
    assert_same(contents(target), store_contents(plain["all"]))
    assert open_repository(FolderPlace(target)).list_branches() == {BRANCH}
    # chunk sizes from the manifests, under Zarr keys: the same compressed chunks
    chunks = {k: n for k, n in FolderPlace(plain["all"]).files().items() if "/c/" in k}
    assert ICECHUNK.object_sizes(FolderPlace(target)) == chunks


def test_history_command(
    plain: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "icechunk"
    convert(plain["half_safe"], target)
    main = convert_safe_to_zarr.main
    assert main(["--format", "icechunk", "--target", str(target), "--history"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "products added" in lines[0] and lines[-1].endswith("Repository initialized")
    assert main(["--format", "zarr", "--target", str(target), "--history"]) == 2
    assert "--history is for an icechunk repository, not zarr" in capsys.readouterr().err


def _converter(source: Path, target: Path) -> subprocess.Popen[bytes]:
    code = (
        "from pathlib import Path; from tests.helpers import SMALL; "
        "from sentinel2_l1c import formats; "
        "from sentinel2_l1c.convert_safe_to_zarr import ZarrOptions, convert; "
        "from sentinel2_l1c.run.dask_engine import DaskEngine; "
        "from sentinel2_l1c.s2.bands import BAND_GROUPS; "
        f"convert(ZarrOptions(Path({str(source)!r}), Path({str(target)!r}), formats.ICECHUNK, "
        "layout=SMALL, engine=DaskEngine(workers=1), band_groups=(BAND_GROUPS[2],)), False)"
    )
    return subprocess.Popen([sys.executable, "-c", code], cwd=REPO)


def _objects(target: Path) -> int:
    chunks = target / "chunks"
    return sum(1 for _ in chunks.iterdir()) if chunks.is_dir() else 0


def _killed_at(source: Path, target: Path, point: Callable[[], bool]) -> None:
    """Run the conversion in a process and kill -9 it when ``point()`` first holds."""
    process = _converter(source, target)
    deadline = time.monotonic() + 120
    try:
        while not point():
            assert process.poll() is None, "the conversion ended before the kill point"
            assert time.monotonic() < deadline
            time.sleep(0.002)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()


def test_kill_9_anywhere_leaves_the_last_commit(
    archive: Archive, plain: dict[str, Path], tmp_path: Path
) -> None:
    """A first conversion and an append (of the 60 m group), each killed at two points: once the prepared arrays
    are on the work branch, and after a random number of chunk objects. The
    repository stays at its last commit; the rerun ends as an uninterrupted run."""
    rng = random.Random(14)
    complete = tmp_path / "complete"
    convert(plain["half_safe"], complete, band_groups=ONE_GROUP)
    first_objects = _objects(complete)
    half = tmp_path / "half"
    shutil.copytree(complete, half)
    convert(archive.root, complete, band_groups=ONE_GROUP)
    stages = (
        (plain["half_safe"], None, plain["half"], first_objects),
        (archive.root, half, plain["all"], _objects(complete) - first_objects),
    )
    for source, start, expected, objects in stages:
        # kill points: once the prepared arrays are on the work branch, after n chunk objects
        for n in (None, rng.randrange(1, objects)):
            target = tmp_path / f"{source.name}-{n}"
            if start is not None:
                shutil.copytree(start, target)
            _killed_at(source, target, partial(_reached, target, _objects(target), n))
            if start is None:  # only "Repository initialized"
                assert [c.products_added for c in history(FolderPlace(target))] == [0]
            else:
                assert_same(contents(target, ONE_GROUP), store_contents(plain["half"], ONE_GROUP))
            assert len(convert(source, target, band_groups=ONE_GROUP)) == 1
            assert_same(contents(target, ONE_GROUP), store_contents(expected, ONE_GROUP))
            assert open_repository(FolderPlace(target)).list_branches() == {BRANCH}


def _reached(target: Path, base: int, objects: int | None) -> bool:
    """Whether the work branch exists (None), or ``objects`` chunk objects were written."""
    if objects is not None:
        return _objects(target) >= base + objects
    storage = icechunk.local_filesystem_storage(str(target))
    return icechunk.Repository.exists(storage) and WORK_BRANCH in (
        icechunk.Repository.open(storage).list_branches()
    )


def test_local_cluster_of_two_processes_equals_threads(
    archive: Archive, plain: dict[str, Path], tmp_path: Path
) -> None:
    """Forked sessions travel pickled to two worker processes and back to be merged."""
    engine = DaskEngine(workers=2, cluster="local")
    assert convert(archive.root, tmp_path / "icechunk", engine=engine, band_groups=ONE_GROUP)
    assert_same(contents(tmp_path / "icechunk", ONE_GROUP), store_contents(plain["all"], ONE_GROUP))


def test_slurm_job_script_from_options_and_variables(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    job = SlurmJob(
        cores=8, memory="32GB", walltime="02:30:00", account="project_2001234", queue="small",
        job_extra=("--gres=nvme:100",),
    )  # fmt: skip
    script = job.job_script()
    directives = [line for line in script.splitlines() if line.startswith("#SBATCH")]
    for expected in ("-A project_2001234", "-p small", "-t 02:30:00", "--cpus-per-task=8",
                     "--mem=30G", "--gres=nvme:100"):  # fmt: skip
        assert any(line.endswith(expected) for line in directives), (expected, directives)
    assert "--nthreads 8" in script and "$LOCAL_SCRATCH" in script
    # the converters' flags, with defaults from DSLAB_SLURM_* variables
    monkeypatch.setenv("DSLAB_SLURM_ACCOUNT", "project_2009999")
    monkeypatch.setenv("DSLAB_SLURM_JOB_EXTRA", "--gres=nvme:50 --constraint=hsw")
    code = convert_safe_to_zarr.main(
        ["--format", "icechunk", "--cluster", "slurm", "--slurm-cores", "2", "--slurm-queue",
         "test", "--source", "/nowhere", "--target", "/nowhere", "--show-job-script"]
    )  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    for expected in ("-A project_2009999", "-p test", "--cpus-per-task=2", "--gres=nvme:50",
                     "--constraint=hsw"):  # fmt: skip
        assert f"#SBATCH {expected}" in out, expected
    monkeypatch.setenv("DSLAB_SLURM_CORES", "many")
    assert convert_safe_to_zarr.main(["--source", "/x", "--target", "/x", "--show-job-script"]) == 2
    assert "DSLAB_SLURM_CORES must be a number" in capsys.readouterr().err


def test_engine_options_are_checked() -> None:
    with pytest.raises(ConfigError, match="unknown cluster"):
        DaskEngine(cluster="pbs")
    with pytest.raises(ConfigError, match="either --scheduler or --cluster"):
        DaskEngine(scheduler="tcp://127.0.0.1:1", cluster="local")
    if os.environ.get("PATH") and not any(
        (Path(p) / "sbatch").exists() for p in os.environ["PATH"].split(":")
    ):
        with (
            pytest.raises(ConfigError, match="needs sbatch"),
            DaskEngine(cluster="slurm").running(),
        ):
            pass


def test_a_format_v1_repository_is_written_as_it_is_and_upgraded_on_request(
    plain: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A repository of icechunk 1's format (made here by icechunk's own v1 writer): appended
    to as it is, with one warning line; ``--upgrade-icechunk`` migrates it in place, in one
    line; the data stays the same; a second upgrade has nothing to do."""
    target = tmp_path / "v1"
    icechunk.Repository.create(icechunk.local_filesystem_storage(str(target)), spec_version=1)
    argv = ["--format", "icechunk", "--target", str(target)]
    assert convert(plain["half_safe"], target, band_groups=ONE_GROUP) != []
    repository = open_repository(FolderPlace(target))
    assert repository.spec_version == icechunk.SpecVersion.v1
    before = contents(target, ONE_GROUP)
    assert_same(before, store_contents(plain["half"], ONE_GROUP))
    main = convert_safe_to_zarr.main
    capsys.readouterr()
    assert main([*argv, "--upgrade-icechunk", "--quiet"]) == 0
    out, err = capsys.readouterr()
    assert out == f"{target}: upgraded from icechunk format v1 to v2\n"
    assert open_repository(FolderPlace(target)).spec_version == icechunk.SpecVersion.v2
    assert_same(contents(target, ONE_GROUP), before)
    assert main([*argv, "--upgrade-icechunk", "--quiet"]) == 0
    assert capsys.readouterr().out == f"{target}: already icechunk format v2\n"
