"""Serve a Zarr datacube as an OGC API - EDR coverage service: ``python -m
sentinel2_l1c.coverage_service``.

The datacube-as-a-service pattern (Sentinel Hub, openEO, xcube's and rasdaman's coverage
endpoints): the server, close to the data, cuts a patch time series and delivers only its
pixels. xpublish with its EDR plugin (xpublish-edr) serves every complete tile-year band group
of a sharded Zarr store as dataset ``{tile}-{year}-{band_group}``; a cube query

    GET /datasets/35VLH-2024-B02_B03_B04_B08/edr/cube?bbox=X1,Y1,X2,Y2&crs=EPSG:32635
        &parameter-name=data&f=netcdf4

answers with the (time, band, y, x) pixels whose centres fall in the box, as NetCDF-4. Groups
are opened when first asked for and again when their data changes, so a store written after
the server started is served (also a store folder that is not there yet). Every answer carries the server's CPU seconds so far
(``X-Dslab-Cpu-Seconds``), so clients can tell what the decoding cost the server.

    python -m sentinel2_l1c.coverage_service --store /scratch/project/sentinel2_l1c_zarr_sharded
"""

from __future__ import annotations

import argparse
import logging
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from threading import Lock
from typing import Any

from sentinel2_l1c.errors import ConfigError
from sentinel2_l1c.run.cli import new_parser, run_cli
from sentinel2_l1c.run.processes import die_with_parent, stop_process

log = logging.getLogger(__name__)

CPU_HEADER = "X-Dslab-Cpu-Seconds"
START_TIMEOUT = 60.0  # seconds for the server to import its stack and listen


def dataset_id(tile: str, year: int, band_group: str) -> str:
    return f"{tile}-{year}-{band_group}"


def group_of(identifier: str) -> str | None:
    """The store path ``{tile}/{year}/{band_group}`` of a dataset id; None if it is not one."""
    parts = identifier.split("-")
    if len(parts) != 3 or not parts[1].isdigit():
        return None
    return "/".join(parts)


def netcdf_attributes(attributes: dict[str, Any]) -> dict[str, Any]:
    """The attributes NetCDF can hold (GeoZarr's nested ones cannot; CF's grid mapping stays)."""
    return {k: v for k, v in attributes.items() if isinstance(v, (str, int, float))}


class ZarrGroups:
    """Opens a store's tile-year groups as xarray datasets when first asked for, and again when
    their data array's metadata changes (a rerun appended dates); incomplete groups are not
    served."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.lock = Lock()
        self.opened: dict[str, tuple[int, Any]] = {}

    def ids(self) -> list[str]:
        return sorted(  # none while the store is not there yet
            dataset_id(*path.parent.parent.relative_to(self.root).parts)
            for path in self.root.glob("*/*/*/data/zarr.json")
        )

    def get(self, identifier: str) -> Any:
        import xarray

        from sentinel2_l1c.cube.protocol import complete_per_metadata

        path = group_of(identifier)
        metadata = self.root / path / "data" / "zarr.json" if path else None
        if metadata is None or not metadata.is_file():
            return None
        version = metadata.stat().st_mtime_ns
        with self.lock:
            known = self.opened.get(identifier)
            if known is not None and known[0] == version:
                return known[1]
            dataset = xarray.open_zarr(
                self.root, group=path, chunks={}, consolidated=False, zarr_format=3,
                mask_and_scale=False,
            )  # fmt: skip
            if not complete_per_metadata(dataset.attrs, lambda name: dataset[name].sizes["time"]):
                log.warning("%s: group %s is not complete: not served", self.root, path)
                return None
            dataset.attrs = {}
            for variable in dataset.variables.values():
                variable.attrs = netcdf_attributes(variable.attrs)
            self.opened[identifier] = (version, dataset)
            return dataset


def application(root: Path) -> Any:
    """The xpublish app: EDR queries over the store's groups, CPU seconds on every answer."""
    import xpublish
    from xpublish_edr import CfEdrPlugin

    groups = ZarrGroups(root)

    class Groups(xpublish.Plugin):
        name: str = "dslab_groups"

        @xpublish.hookimpl
        def get_datasets(self) -> Iterable[str]:
            return groups.ids()

        @xpublish.hookimpl
        def get_dataset(self, dataset_id: str) -> Any:
            return groups.get(dataset_id)

    rest = xpublish.Rest(plugins={"groups": Groups(), "edr": CfEdrPlugin()})
    app = rest.app

    @app.middleware("http")
    async def cpu_seconds(request: Any, call_next: Any) -> Any:
        response = await call_next(request)
        response.headers[CPU_HEADER] = f"{time.process_time():.6f}"
        return response

    return app


def serve(root: Path, host: str, port: int) -> None:
    """Listen, print the endpoint once listening (the lab reads it), serve until SIGTERM."""
    import uvicorn

    if not root.parent.is_dir():
        raise ConfigError(f"{root.parent}: no such folder")
    if not root.is_dir():
        log.warning("%s is not there yet: serving its groups once they are written", root)
    app = application(root)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        raise ConfigError(f"cannot listen on {host}:{port}: {err.strerror}") from None
    sock.listen(128)  # connections wait in the backlog until uvicorn accepts them
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    print(f"http://{host}:{sock.getsockname()[1]}", flush=True)
    server.run(sockets=[sock])


class ServiceProcess:
    """The service in a child process on a free loopback port, stopped by its PID; ``start``
    returns at once, ``wait`` until it listens (so the lab starts its other servers between);
    ConfigError in one line when it cannot start."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.process: subprocess.Popen[str] | None = None
        self.endpoint = ""

    def start(self) -> ServiceProcess:
        command = [
            sys.executable, "-m", "sentinel2_l1c.coverage_service", "--store", str(self.root),
            "--port", "0", "--log-level", "WARNING",
        ]  # fmt: skip
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            preexec_fn=die_with_parent(),
        )  # fmt: skip
        return self

    def wait(self) -> str:
        assert self.process is not None and self.process.stdout is not None, "start() first"
        ready = _read_line(self.process, START_TIMEOUT)
        if not ready.startswith("http://"):
            self.process.wait(START_TIMEOUT)
            said = (self.process.stderr.read() if self.process.stderr else "").strip()
            self.stop()
            last = said.splitlines()[-1] if said else ready or "nothing"
            raise ConfigError(f"the coverage service did not start: {last}")
        self.endpoint = ready
        return ready

    def stop(self) -> None:
        if self.process is None:
            return
        stop_process(self.process)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()
        self.process = None

    def __enter__(self) -> ServiceProcess:
        self.start()
        try:
            self.wait()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _read_line(process: subprocess.Popen[str], timeout: float) -> str:
    """The child's first line of output, or "" if it ends or says nothing for ``timeout``."""
    import selectors

    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            return ""
    return process.stdout.readline().strip()


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser(__doc__.split("\n\n")[0], "python -m sentinel2_l1c.coverage_service")
    parser.add_argument(
        "--store", type=Path, required=True,
        help="The Zarr store folder to serve (made by convert_safe_to_zarr or ingest).",
    )  # fmt: skip
    parser.add_argument(
        "--host", default="127.0.0.1", help="Address to listen on (default: loopback only)."
    )
    parser.add_argument("--port", type=int, default=9000, help="Port (0: any free one).")
    return parser


def _run(args: argparse.Namespace) -> int:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    serve(args.store, args.host, args.port)
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_cli(build_parser(), argv, _run)


if __name__ == "__main__":
    sys.exit(main())
