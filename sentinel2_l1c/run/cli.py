"""The command-line style every module shares.

- Options are kebab-case (``--num-repeats``); the first version's snake_case spellings
  (``--num_repeats``) and renamed options (``--tile_id`` for ``--tile``) are accepted too.
- ``--output`` is always a folder of results files; charts are ``--img`` (a folder) or
  ``--chart`` (a file); data folders are ``--source``/``--target``.
- Switches are flags; where the first version took ``true|false`` the value is still accepted.
- ``--help`` shows each real default once; expected errors end with one line on stderr.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from sentinel2_l1c.errors import ConfigError, DslabError
from sentinel2_l1c.run.dask_engine import CLUSTERS, DaskEngine, SlurmJob

DEFAULT_CONNECTIONS = 8  # concurrent transfers of publish_s3 and stage
ALIAS_NOTE = "Options also accept snake_case spellings (--log_level for --log-level)."


def parse_bool(text: str) -> bool:
    """argparse ``type=`` for ``true|false`` values (``bool('False')`` would be True)."""
    value = text.strip().lower()
    if value in ("true", "yes", "1", "on"):
        return True
    if value in ("false", "no", "0", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


class Parser(argparse.ArgumentParser):
    """An ArgumentParser that shows each option's real default once in ``--help`` and maps
    accepted old spellings onto the options' own names."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.aliases: dict[str, str] = {}

    def add_argument(self, *args: Any, **kwargs: Any) -> argparse.Action:
        """As argparse's, with ``(default: …)`` added to the help of options whose default is
        a value (not None, a switch's False, an empty list) unless the help says it. (Options
        in argument groups write their default into their help themselves.)"""
        default, text = kwargs.get("default"), kwargs.get("help")
        shown = default not in (None, [], argparse.SUPPRESS) and not isinstance(default, bool)
        if text and text != argparse.SUPPRESS and shown and "(default" not in text:
            kwargs["help"] = f"{text} (default: {_shown(default)})"
        return super().add_argument(*args, **kwargs)

    def add_alias(self, alias: str, option: str) -> None:
        """Accept ``alias`` for ``option`` (without listing it in ``--help``)."""
        self.aliases[alias] = option

    def spelling(self, token: str) -> str:
        """``token`` with an accepted alias or a snake_case option name rewritten (every
        option is kebab-case, so that is the only meaning a snake_case one can have)."""
        name, sep, value = token.partition("=")
        if name in self.aliases:
            return self.aliases[name] + sep + value
        return "--" + name[2:].replace("_", "-") + sep + value

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        tokens = list(sys.argv[1:] if args is None else args)
        end = tokens.index("--") if "--" in tokens else len(tokens)  # a command after -- is kept
        tokens[:end] = [self.spelling(t) if t.startswith("--") else t for t in tokens[:end]]
        return super().parse_known_args(tokens, namespace)


def _shown(default: Any) -> str:
    return " ".join(map(str, default)) if isinstance(default, list | tuple) else str(default)


def new_parser(description: str, prog: str) -> Parser:
    """A parser with the shared options (--log-level, --quiet) and defaults shown in --help."""
    parser = Parser(prog=prog, description=description, epilog=ALIAS_NOTE)
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help="Logging level of messages on stderr.",
    )
    parser.add_argument(
        "--quiet", action="store_true", help="No progress bars; only warnings and errors."
    )
    return parser


def add_lock_wait(parser: argparse.ArgumentParser) -> None:
    """``--lock-wait``: how long a writer waits for another writer of the same tile-year."""
    parser.add_argument(
        "--lock-wait", type=float, default=0.0, metavar="SECONDS",
        help="Seconds to wait while another writer holds a tile-year (its lock names it) "
        "before stopping (default: 0, stop at once).",
    )  # fmt: skip


def add_switch(parser: argparse.ArgumentParser, option: str, default: bool, help: str) -> None:
    """A flag that also takes ``true|false`` (``--async-zipfs``, ``--async-zipfs false``)."""
    parser.add_argument(
        option,
        nargs="?",
        const=True,
        default=default,
        type=parse_bool,
        metavar="true|false",
        help=f"{help} (default: {str(default).lower()})",
    )


def add_results_folder(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--output", type=Path, default=None, help="Results folder (default: $DSLAB_LOG_FOLDER)."
    )


def add_selection_arguments(
    parser: argparse.ArgumentParser, source_help: str, target_help: str
) -> None:
    """Which tile-years of a SAFE root a command works on, and where from and to."""
    parser.add_argument(
        "--tiles", "--tile", nargs="+", default=None, metavar="TILE",
        help="Only these tiles (default: every tile found).",
    )  # fmt: skip
    parser.add_argument(
        "--years", "--year", nargs="+", type=int, default=None, metavar="YEAR",
        help="Only these UTC years (default: every year found).",
    )  # fmt: skip
    parser.add_argument("--source", type=Path, default=None, help=source_help)
    parser.add_argument("--target", type=Path, default=None, help=target_help)


def add_conversion_arguments(
    parser: argparse.ArgumentParser, source_help: str, target_help: str
) -> None:
    """Options of the converters: what to convert, where from and to, on which Dask engine."""
    add_selection_arguments(parser, source_help, target_help)
    add_engine_arguments(parser)


def add_engine_arguments(parser: argparse.ArgumentParser, workers: str = "CPU count") -> None:
    """The Dask engine's options: threads, a scheduler, a local cluster or Slurm jobs
    (``workers``: what ``--workers`` defaults to)."""
    parser.add_argument(
        "--workers", type=int, default=None,
        help=f"Dask threads, or worker processes with --cluster local (default: {workers}).",
    )  # fmt: skip
    parser.add_argument(
        "--scheduler",
        default=None,
        help="Address of a running dask.distributed scheduler (e.g. tcp://host:8786) instead "
        "of local threads; its workers must see the same files.",
    )
    parser.add_argument(
        "--cluster", choices=CLUSTERS, default="threads",
        help="threads: this process; local: a LocalCluster of --workers processes; slurm: "
        "Dask workers in Slurm jobs (dask-jobqueue; the --slurm-* options).",
    )  # fmt: skip
    slurm = parser.add_argument_group(
        "Slurm jobs of --cluster slurm; unset flags come from $DSLAB_SLURM_CORES, _MEMORY, "
        "_WALLTIME, _ACCOUNT, _QUEUE, _JOB_EXTRA (space-separated), _JOBS, else the values shown"
    )
    defaults = SlurmJob()
    for name, kind, text in (
        ("cores", int, f"Worker threads per job ({defaults.cores})."),
        ("memory", str, f"Memory per job ({defaults.memory})."),
        ("walltime", str, f"Time limit per job ({defaults.walltime})."),
        ("account", str, "Billing project (e.g. project_2001234)."),
        ("queue", str, "Partition (e.g. small)."),
        ("jobs", int, f"Jobs started ({defaults.jobs})."),
    ):
        slurm.add_argument(f"--slurm-{name}", type=kind, default=None, help=text)
    slurm.add_argument(
        "--slurm-job-extra", nargs="+", default=None, metavar="DIRECTIVE",
        help="Extra #SBATCH directives, e.g. --slurm-job-extra=--gres=nvme:100.",
    )  # fmt: skip
    slurm.add_argument(
        "--show-job-script", action="store_true",
        help="Print the Slurm job script of these options and exit (needs no Slurm).",
    )  # fmt: skip


def slurm_job(args: argparse.Namespace, environ: Mapping[str, str]) -> SlurmJob:
    """The Slurm job of the --slurm-* options, else $DSLAB_SLURM_* variables, else defaults."""
    values: dict[str, Any] = {}
    for field in dataclasses.fields(SlurmJob):
        flag = getattr(args, f"slurm_{field.name}")
        text = environ.get(f"DSLAB_SLURM_{field.name.upper()}", "")
        if flag is not None:
            values[field.name] = tuple(flag) if field.name == "job_extra" else flag
        elif field.name == "job_extra":
            values[field.name] = tuple(text.split())
        elif text:
            try:
                values[field.name] = int(text) if field.name in ("cores", "jobs") else text
            except ValueError:
                raise ConfigError(
                    f"DSLAB_SLURM_{field.name.upper()} must be a number: {text!r}"
                ) from None
    return SlurmJob(**values)


def dask_engine(args: argparse.Namespace, environ: Mapping[str, str]) -> DaskEngine:
    """The Dask engine of a converter's options."""
    return DaskEngine(args.workers, args.scheduler, args.cluster, slurm_job(args, environ))


def add_transfer_arguments(parser: argparse.ArgumentParser, connections_help: str) -> None:
    """Options of the commands that move data and log timings: concurrency, results folder."""
    parser.add_argument(
        "--connections", type=int, default=DEFAULT_CONNECTIONS, help=connections_help
    )
    add_results_folder(parser)


def options_from_args[T](options_class: type[T], args: argparse.Namespace, **values: Any) -> T:
    """Build an options dataclass from the parsed arguments named like its fields."""
    names = {field.name for field in dataclasses.fields(options_class)}  # type: ignore[arg-type]
    found = {name: value for name, value in vars(args).items() if name in names}
    return options_class(**{**found, **values})


def configure_logging(level: str = "INFO", quiet: bool = False) -> None:
    """Diagnostics to stderr; only ``main`` functions call this."""
    logging.basicConfig(
        level=logging.WARNING if quiet else getattr(logging, level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )
    if level != "DEBUG":  # their INFO lines (credential lookups, connections) are noise here
        for name in ("botocore", "boto3", "s3transfer", "urllib3", "rasterio"):
            logging.getLogger(name).setLevel(logging.WARNING)


def interrupt_on_sigterm() -> None:
    """SIGTERM (Slurm ending a job, kill, a terminal closing) interrupts like ^C, so servers a
    command started are stopped by its ``with`` blocks instead of being left running."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def run_cli(
    parser: argparse.ArgumentParser,
    argv: list[str] | None,
    command: Callable[[argparse.Namespace], int | None],
) -> int:
    """Parse ``argv``, set up logging, run ``command``; expected errors become one line."""
    args = parser.parse_args(argv)
    configure_logging(args.log_level, args.quiet)
    try:
        return command(args) or 0
    except DslabError as err:
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return err.exit_code
    except OSError as err:  # a full disk, a file where a folder should be, a refused connection
        logging.getLogger(__name__).debug("%s failed", parser.prog, exc_info=True)
        print(f"{parser.prog}: error: {describe_os_error(err)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{parser.prog}: interrupted", file=sys.stderr)
        return 130


def describe_os_error(error: OSError) -> str:
    """One line: what failed and on which file (the traceback is logged at DEBUG)."""
    what = error.strerror or str(error) or type(error).__name__
    return f"{error.filename}: {what}" if error.filename else what
