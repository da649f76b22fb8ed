"""Run a command with the offline lab's servers up: ``python -m sentinel2_l1c.lab.serve``.

Starts the lab's local CDSE and S3 storage (SeaweedFS, whose data stay in ``LAB/seaweedfs``,
so buckets published earlier are still there, the STAC API, and the coverage service over the
network drive's sharded Zarr: ``coverage_service``), sets the lab's ``DSLAB_*``
settings and AWS files, runs the command, and stops the servers when it ends, or when it
is interrupted or sent SIGTERM (the command is killed then too). So the
modules and ``job.sh`` run on the lab exactly as elsewhere. ``--network`` and
``--cdse-network`` make the lab's S3 storage and CDSE answer like remote stores
(``lab/network.py``), ``--drive-network`` mounts the network drive as a shaped network
filesystem (``lab/drive.py``); every result records the profiles.

    python -m sentinel2_l1c.lab.serve --lab lab --network allas -- bash job.sh
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from pathlib import Path

from sentinel2_l1c.errors import ConfigError
from sentinel2_l1c.lab import network
from sentinel2_l1c.lab.cdse import LocalCdse
from sentinel2_l1c.lab.layout import lab_environment, source_root
from sentinel2_l1c.run.cli import interrupt_on_sigterm, new_parser, run_cli

REPOSITORY = Path(__file__).resolve().parents[2]
STOP_TIMEOUT = 10.0  # seconds the command gets to end after SIGTERM


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser(__doc__.split("\n\n")[0], "python -m sentinel2_l1c.lab.serve")
    parser.add_argument("--lab", type=Path, default=Path("lab"), help="Lab folder.")
    network.add_arguments(parser, s3="loopback", cdse="loopback", drive="lustre")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="Command to run (after --).")
    return parser


def _run(args: argparse.Namespace) -> int:
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        raise ConfigError("no command given: python -m sentinel2_l1c.lab.serve --lab LAB -- CMD")
    interrupt_on_sigterm()
    source = source_root(args.lab)
    source.mkdir(parents=True, exist_ok=True)
    with LocalCdse(
        args.lab, source, args.network, args.cdse_network, args.drive_network, service=True
    ) as cdse:
        environment = {**os.environ, **lab_environment(args.lab), **cdse.environment()}
        paths = [str(REPOSITORY), *filter(None, [os.environ.get("PYTHONPATH")])]
        environment["PYTHONPATH"] = os.pathsep.join(paths)  # python -m sentinel2_l1c… anywhere
        return run_in_group(command, environment)


def run_in_group(command: list[str], environment: dict[str, str]) -> int:
    """Run ``command`` in a process group of its own; if this process is interrupted or sent
    SIGTERM, the whole group (``bash job.sh`` and what it started) is stopped too."""
    process = subprocess.Popen(command, env=environment, start_new_session=True)
    try:
        return process.wait()
    except BaseException:
        _signal_group(process.pid, signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            _signal_group(process.pid, signal.SIGKILL)
            process.wait()
        raise


def _signal_group(group: int, signum: int) -> None:
    try:
        os.killpg(group, signum)
    except ProcessLookupError:  # every process of the group has ended
        pass


def main(argv: list[str] | None = None) -> int:
    return run_cli(build_parser(), argv, _run)


if __name__ == "__main__":
    sys.exit(main())
