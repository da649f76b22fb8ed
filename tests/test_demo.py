"""demo: one command makes a lab, runs the workflow on it and says what it made."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from sentinel2_l1c import demo
from sentinel2_l1c.bench.config import paired
from sentinel2_l1c.formats import ZARR, ZARR_SHARDED, reader_keys, variant
from sentinel2_l1c.lab import drive, serve
from sentinel2_l1c.lab.cdse import LocalCdse
from sentinel2_l1c.lab.layout import lab_environment, source_root
from sentinel2_l1c.lab.network import PROFILES
from sentinel2_l1c.s2.listing import list_products, safe_folders
from sentinel2_l1c.storage.storages import STORAGES, get
from tests.helpers import weed_sockets

LOOPBACK = [
    "--network", "loopback", "--cdse-network", "loopback", "--drive-network", "loopback",
    "--concurrency",
]  # fmt: skip


@pytest.mark.lab
def test_demo_makes_a_lab_that_serve_brings_back(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """The whole workflow on a new lab, a rerun that reuses it, then the lab's servers back
    with what was published (one demo run for both: it is the suite's longest test)."""
    lab = tmp_path / "lab"
    argv = ["--lab", str(lab), "--scale", "61", "--interval_days", "45", "--quiet"]
    assert demo.main(argv) == 0
    out = capfd.readouterr().out
    products = list_products(source_root(lab), "35VLH", 2024)
    assert len(products) == 9  # every 45 days through 2024, duplicates resolved
    assert f"{len(products)} datatakes after duplicate resolution" in out
    assert "11 L1C products" in out  # the two duplicates are there too
    if drive.fuse_missing() is None:
        assert "network drive weed mount, lustre: latency_ms=" in out
        assert not any((lab / "network").iterdir())  # its files are in the lab's filer
    else:
        assert f"network drive folder (no FUSE: {drive.fuse_missing()})" in out
    with LocalCdse(lab, source_root(lab), drive=PROFILES["loopback"]):  # the drive, mounted
        network = lab / "network" / "sentinel2_l1c_safe"
        assert [p.path.relative_to(source_root(lab)) for p in products] == [
            p.relative_to(network) for p in safe_folders(network)
        ]
        assert (lab / "network" / "sentinel2_l1c_zipzarr.zip").is_file()
        cogs = lab / "network" / "sentinel2_l1c_cog" / "35VLH" / "2024"
        assert len([p for p in cogs.iterdir() if p.is_dir()]) == 9  # and the STAC catalogue
    assert "intake_cdse_s3_year" in out and "9 products found, 9 downloaded" in out
    for fmt in ("cog", "zarr", "zarr_sharded", "icechunk", "safe_virtual"):
        assert f"network {fmt}: " in out
    assert "1 commit (icechunk)" in out  # the tile-year
    assert "publish_s3 → " in out and "stage → " in out
    first, second = out.index("ingest up to 2024-07-01"), out.index("ingest up to 2025-01-01")
    assert "0 already in the target" in out[first:second] and "layout chunks_128_append" in out
    appended = re.findall(r"ingest up to \S+ → s3://sentinel2-l1c-ingested: \d+ products found, \d+ already in the target, (\d+) appended", out)  # fmt: skip
    assert sum(map(int, appended)) == len(products)
    indexed = re.findall(r"ingest --format safe_virtual up to \S+ → \S+: \d+ products found, \d+ already in the target, (\d+) appended", out)  # fmt: skip
    kept = re.findall(r"safe_virtual up to \S+ → \S+: \S+: \d+ manifests written for \d+ products; \d+ band files indexed in \d+ reads, (\d+) kept", out)  # fmt: skip
    assert sum(map(int, indexed)) == len(products) and len(kept) == 2 and int(kept[1]) > 0
    assert "plan: zarr_sharded:chunks_128, 77 tiles × 10 years" in out and "tib: " in out
    assert "stream-unzip zipzarr s3://sentinel2-l1c-zipzarr/" in out
    for fmt in ("safe", "cog", "zarr", "zarr_sharded", "zipzarr", "icechunk", "safe_virtual"):
        assert Path(lab_environment(lab)[f"DSLAB_S2L1C_TEMP_{fmt.upper()}_PATH"]).exists()
    assert "benchmark_patch_load" in out and "× fastest" in out
    table = out[out.index("benchmark_patch_load") : out.index("zarr / ideal")]
    rows = [line.split() for line in table.splitlines()[2:-1]]
    held = {(s, k) for s in STORAGES for k in reader_keys() if paired(get(s), variant(k))}
    assert ("service", "zarr_sharded@edr") in held
    ideal = {(s, "ideal") for s in STORAGES if get(s).holds(ZARR)}
    skipped = {tuple(name.split("/")) for name in demo.variants_beyond_their_storage()}
    assert ("cdse", "safe_virtual@gdal_tlm") in skipped and ("temp", "safe@odc-stac") in skipped
    assert ("network", "zarr@xarray") in skipped and ("temp", "cog@stackstac") in skipped
    assert {(row[0], row[1]) for row in rows} == (held - skipped) | ideal
    shown = held - skipped  # every reader on one storage at least
    assert {key for _, key in shown} == {key for _, key in held}
    assert {
        ("network", "safe@odc-stac"),
        ("s3", "zarr@xarray"),
        ("service", "zarr_sharded@edr"),
    } <= shown
    assert ("cdse", "ideal") not in ideal
    assert "networks: lab S3 allas: latency_ms=" in out and "CDSE cdse: " in out
    assert "in flight" in out and "patches/s" in out  # the loader mode, Zarr formats and COG
    assert "s3       zarr" in out[out.index("in flight") :]
    assert "throughput:" in out and "S3 zipped Zarr → stream-unzip → temp Zarr" in out
    assert "fastest patch loads (measured here): " in out
    assert "most training steps per job: " in out and "full-size tile-year estimate" in out
    assert "full-size estimate: a tile-year of 10980 px and 192 dates" in out
    sweep = out[out.index("layout_sweep → ") :]  # the default layout beside two others
    for layout in ("first_version", "chunks_128", ZARR_SHARDED.layout):
        assert f"zarr_sharded:{layout} " in sweep
    assert "default by the rule for zarr_sharded: " in sweep
    charts = ("load_times", "throughput", "concurrency", "file_sizes_s3_zarr")
    for name in (*charts, "file_sizes_s3_zarr_sharded", "file_sizes_s3_icechunk"):
        assert (lab / "img" / f"{name}.png").stat().st_size > 10_000
    assert (lab / "img" / "throughput.ods").is_file()
    settings = dict(
        line.split("=", 1)
        for line in (lab / "lab.env").read_text().splitlines()
        if not line.startswith("#")
    )
    assert settings == lab_environment(lab)

    # A rerun reuses the products instead of writing them again (on loopback, one at a time).
    stamp = products[0].path.joinpath("manifest.safe").stat().st_mtime_ns
    assert demo.main([*argv, "--repeats", "2", *LOOPBACK]) == 0
    assert products[0].path.joinpath("manifest.safe").stat().st_mtime_ns == stamp
    assert "0 downloaded, 9 already complete" in capfd.readouterr().out

    # The lab's servers come back with what was published.
    command = [sys.executable, "-m", "sentinel2_l1c.publish_s3", "--formats", "zarr", "--dry-run"]
    assert serve.main(["--lab", str(lab), "--quiet", "--", *command]) == 0
    out = capfd.readouterr().out
    assert "skip " in out and "objects already in s3://sentinel2-l1c-zarr" in out
    assert "upload " not in out
    shown = [sys.executable, "-c", "import os; print(os.environ['DSLAB_LAB_NETWORK'])"]
    assert serve.main(["--lab", str(lab), "--network", "cdse,latency_ms=1", "--", *shown]) == 0
    assert "cdse*: latency_ms=1,mbps=20,connections=4" in capfd.readouterr().out
    assert serve.main(["--lab", str(lab), "--quiet"]) == 2


def test_demo_rejects_bad_scale(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert demo.main(["--lab", str(tmp_path / "lab"), "--scale", "4", "--quiet"]) == 2
    assert "scale 4 must divide 1830" in capsys.readouterr().err
    assert not (tmp_path / "lab").exists()


@pytest.mark.lab
def test_serve_stops_servers_and_command_on_sigterm(tmp_path: Path) -> None:
    """SIGTERM (Slurm ending a job, kill) used to leave SeaweedFS and the command running."""
    import signal
    import subprocess
    import time

    import psutil

    command = ["bash", "-c", "sleep 300 & wait"]  # a command with a child of its own
    serve_process = subprocess.Popen(
        [sys.executable, "-m", "sentinel2_l1c.lab.serve", "--lab", str(tmp_path / "lab"),
         "--quiet", "--", *command],
        stderr=subprocess.PIPE,
    )  # fmt: skip
    parent = psutil.Process(serve_process.pid)
    deadline = time.monotonic() + 120
    started: list[psutil.Process] = []
    while time.monotonic() < deadline:
        started = parent.children(recursive=True)
        if any(p.name() == "sleep" for p in started):
            break
        time.sleep(0.2)
    names = {p.name() for p in started}
    assert {"weed", "sleep", "bash"} <= names, names
    weed = next(p for p in started if p.name() == "weed")
    sockets = weed_sockets(weed.cmdline())
    assert sockets, "weed made no socket files in /tmp: the clean-up looks in the wrong place"
    serve_process.send_signal(signal.SIGTERM)
    assert serve_process.wait(60) == 130
    assert "interrupted" in serve_process.stderr.read().decode()
    gone, alive = psutil.wait_procs(started, timeout=30)
    assert alive == [], [p.name() for p in alive]
    assert [path for path in sockets if path.exists()] == []
