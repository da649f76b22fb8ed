"""Publish the network copies of the chosen formats to their S3 buckets, timed.

For each format: create the bucket named in ``DSLAB_S2L1C_S3_{FORMAT}_BUCKET`` if missing,
then sync the network copy into it: objects already there with the same size and checksum
(ETag: MD5, or MD5 of part MD5s for multipart objects) are skipped, the rest are uploaded in
parallel, large files as parallel multipart uploads. An archive format (the zipped Zarr)
becomes one object under ``DSLAB_S2L1C_S3_{FORMAT}_KEY``. Hidden files and folders
(temporary outputs of this tool) are never published. ``--delete`` removes objects that have
no local counterpart; ``--public`` applies the package's ``public-read-policy.json`` with
``${BUCKET}`` set to each bucket, so anonymous reads work on these buckets and no others. ``--dry-run`` prints the plan and
changes nothing. Each format's wall time, bytes and object count go into
``$DSLAB_LOG_FOLDER/publish_YYYY-MM-DD_HH-MM-SS.json``.

    python -m sentinel2_l1c.publish_s3 --formats zarr zipzarr --public
"""

from __future__ import annotations

import argparse
import importlib.resources
import json
import logging
import string
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from sentinel2_l1c import formats
from sentinel2_l1c.errors import ConfigError, InputDataError
from sentinel2_l1c.records.actions import Action, ActionLog
from sentinel2_l1c.run.cli import DEFAULT_CONNECTIONS, add_transfer_arguments, new_parser, run_cli
from sentinel2_l1c.run.parallel import run_parallel
from sentinel2_l1c.run.progress import progress_bar
from sentinel2_l1c.storage import storages
from sentinel2_l1c.storage.clients import s3_client
from sentinel2_l1c.storage.files import hidden
from sentinel2_l1c.storage.locations import Locations
from sentinel2_l1c.storage.retry import call_with_retries
from sentinel2_l1c.storage.transfer import (
    PART_SIZE,
    RemoteObject,
    Tally,
    abort_stale_uploads,
    list_objects,
    matches_etag,
    upload_object,
)

log = logging.getLogger(__name__)

POLICY_FILE = "public-read-policy.json"  # at the repository root; package data by a link


def policy_template() -> str:
    return importlib.resources.files(__package__).joinpath(POLICY_FILE).read_text()


@dataclass
class Plan:
    """What publishing one format takes: bucket, uploads, skips, deletions."""

    fmt: str
    source: Path
    bucket: str
    create_bucket: bool
    uploads: list[tuple[Path, str]] = field(default_factory=list)
    skipped: Tally = field(default_factory=Tally)
    stale: list[str] = field(default_factory=list)

    def lines(self, delete: bool, public: bool) -> list[str]:
        """The plan as the lines ``--dry-run`` prints."""
        lines = [f"create bucket s3://{self.bucket}"] if self.create_bucket else []
        lines += [
            f"upload {path} -> s3://{self.bucket}/{key} ({path.stat().st_size} bytes)"
            for path, key in self.uploads
        ]
        if self.skipped.files:
            lines.append(
                f"skip {self.skipped.files} objects already in s3://{self.bucket} "
                f"({self.skipped.bytes} bytes)"
            )
        if delete:
            lines += [f"delete s3://{self.bucket}/{key}" for key in self.stale]
        elif self.stale:
            lines.append(f"keep {len(self.stale)} objects with no local file (--delete removes)")
        if public:
            lines.append(f"set public-read policy on s3://{self.bucket}")
        return lines


def local_objects(source: Path, zip_key: str | None) -> dict[str, Path]:
    """Object key → local file: every visible file of a folder, or the zip under its key."""
    if zip_key is not None:
        return {zip_key: source}
    files: dict[str, Path] = {}
    for path in sorted(source.rglob("*")):
        relative = PurePosixPath(path.relative_to(source).as_posix())
        if path.is_file() and not hidden(relative):
            files[str(relative)] = path
    return files


def sync_plan(
    local: dict[str, Path],
    remote: dict[str, RemoteObject],
    same: Callable[[Path, RemoteObject], bool],
) -> tuple[list[tuple[Path, str]], Tally, list[str]]:
    """Uploads (local files missing or different remotely), skips, and remote-only keys."""
    uploads, skipped = [], Tally()
    for key, path in local.items():
        existing = remote.get(key)
        if existing is not None and existing.size == path.stat().st_size and same(path, existing):
            skipped.add(1, existing.size)
        else:
            uploads.append((path, key))
    stale = sorted(set(remote) - set(local))
    return uploads, skipped, stale


READ_ACTIONS = {"s3:GetObject", "s3:ListBucket", "s3:GetBucketLocation"}


def policy_for(bucket: str, template: str) -> str:
    """The public-read policy text with ``${BUCKET}`` replaced. It may only allow reading
    ``bucket``: every statement an Allow of read actions on the bucket or its objects, none
    with NotAction, NotResource or NotPrincipal (which grant everything they do not name)."""
    try:
        policy = json.loads(string.Template(template).substitute(BUCKET=bucket))
    except (KeyError, ValueError) as err:
        raise ConfigError(
            f"{POLICY_FILE}: not a policy template with ${{BUCKET}} ({err})"
        ) from None
    statements = policy.get("Statement", []) if isinstance(policy, dict) else None
    if isinstance(statements, dict):
        statements = [statements]
    if not isinstance(statements, list) or not statements:
        raise ConfigError(f"{POLICY_FILE}: no Statement list")
    for statement in statements:
        if not isinstance(statement, dict):
            raise ConfigError(f"{POLICY_FILE}: a statement is not an object: {statement!r}")
        negated = sorted(key for key in statement if key.startswith("Not"))
        if negated:
            raise ConfigError(
                f"{POLICY_FILE}: {negated[0]} is not allowed (it grants what it omits)"
            )
        if statement.get("Effect") != "Allow":
            continue  # a Deny only takes away
        actions = set(_strings(statement.get("Action")))
        if not actions or not actions <= READ_ACTIONS:
            raise ConfigError(
                f"{POLICY_FILE}: actions {sorted(actions - READ_ACTIONS) or '(none)'} are not "
                f"read-only (allowed: {', '.join(sorted(READ_ACTIONS))})"
            )
        resources = _strings(statement.get("Resource"))
        if not resources:
            raise ConfigError(f"{POLICY_FILE}: a statement names no Resource")
        for resource in resources:
            if not (
                resource == f"arn:aws:s3:::{bucket}"
                or resource.startswith(f"arn:aws:s3:::{bucket}/")
            ):
                raise ConfigError(
                    f"{POLICY_FILE}: resource {resource!r} reaches beyond bucket {bucket}"
                )
    return json.dumps(policy)


def _strings(value: object) -> list[str]:
    """A policy field that is one string or a list of them."""
    if isinstance(value, str):
        return [value]
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


@dataclass(frozen=True)
class PublishOptions:
    formats: tuple[str, ...] = tuple(formats.FORMATS)
    public: bool = False
    delete: bool = False
    dry_run: bool = False
    connections: int = DEFAULT_CONNECTIONS

    def __post_init__(self) -> None:
        for name in self.formats:
            formats.get(name)
        if self.connections < 1:
            raise ConfigError(f"--connections must be at least 1, got {self.connections}")


class Publisher:
    """Plans and carries out the sync of network copies to buckets with one S3 client."""

    def __init__(self, options: PublishOptions, locations: Locations) -> None:
        self.options = options
        self.locations = locations
        self.retry = locations.s3_account.retry
        self.client = s3_client(locations.s3_account, options.connections * 2)

    def plan(self, name: str) -> Plan:
        fmt = formats.get(name)
        source = storages.NETWORK.path(self.locations, fmt)
        if not source.exists():
            raise InputDataError(
                f"{source} (network {name}) does not exist: run {storages.NETWORK.step_for(fmt)} "
                "first"
            )
        target = storages.S3.place(self.locations, fmt)
        zip_key = target.key or None
        exists = target.bucket_exists(storages.S3.variables(fmt)[0])
        remote = {}
        if exists:
            listed = list_objects(self.client, target.bucket, zip_key or "", self.retry)
            remote = {o.key: o for o in listed if zip_key is None or o.key == zip_key}
        uploads, skipped, stale = sync_plan(
            local_objects(source, zip_key), remote, lambda path, o: matches_etag(path, o.etag)
        )
        return Plan(name, source, target.bucket, not exists, uploads, skipped, stale)

    def carry_out(self, plan: Plan, show_progress: bool) -> Tally:
        """Create the bucket, upload, delete, set the policy; returns what was uploaded."""
        retry = self.retry
        if plan.create_bucket:
            call_with_retries(
                f"create s3://{plan.bucket}",
                lambda: self.client.create_bucket(Bucket=plan.bucket),
                retry,
            )
        if not plan.create_bucket:  # a killed run's unfinished uploads of these keys
            abort_stale_uploads(self.client, plan.bucket, {key for _, key in plan.uploads}, retry)
        uploaded = Tally()
        lock = threading.Lock()
        total = sum(path.stat().st_size for path, _ in plan.uploads)
        with (
            progress_bar(
                len(plan.uploads), f"publishing {plan.fmt}", show_progress, ("MB",)
            ) as bar,
            ThreadPoolExecutor(self.options.connections) as pool,
        ):

            def progress(files: int, size: int) -> None:
                with lock:
                    uploaded.add(files, size)
                    bar.update(
                        uploaded.files, MB=f"{uploaded.bytes / 1e6:.0f}/{total / 1e6:.0f} MB"
                    )

            large = [(p, k) for p, k in plan.uploads if p.stat().st_size > PART_SIZE]
            small = [(p, k) for p, k in plan.uploads if p.stat().st_size <= PART_SIZE]
            for path, key in large:  # parts in parallel, one file at a time
                upload_object(
                    self.client, plan.bucket, key, path, retry, pool, lambda n: progress(0, n)
                )
                progress(1, 0)
            run_parallel(
                pool,
                lambda job: upload_object(
                    self.client, plan.bucket, job[1], job[0], retry, None, lambda n: progress(1, n)
                ),
                small,
            )
        if self.options.delete:
            for key in plan.stale:
                call_with_retries(
                    f"DELETE s3://{plan.bucket}/{key}",
                    lambda key=key: self.client.delete_object(Bucket=plan.bucket, Key=key),
                    retry,
                )
        if self.options.public:
            policy = policy_for(plan.bucket, policy_template())
            call_with_retries(
                f"set policy on s3://{plan.bucket}",
                lambda: self.client.put_bucket_policy(Bucket=plan.bucket, Policy=policy),
                retry,
            )
        return uploaded


def publish(
    options: PublishOptions, locations: Locations, output: Path, show_progress: bool = True
) -> Path | None:
    """Publish every chosen format; returns the results file (None on a dry run)."""
    publisher = Publisher(options, locations)
    if options.public:
        policy_template()  # a missing policy file fails before any upload
    journal = None
    for fmt in options.formats:
        started = time.perf_counter()
        plan = publisher.plan(fmt)
        if options.dry_run:
            for line in plan.lines(options.delete, options.public):
                print(line)
            continue
        uploaded = publisher.carry_out(plan, show_progress)
        seconds = time.perf_counter() - started
        if journal is None:
            config = {
                "formats": list(options.formats),
                "public": options.public,
                "delete": options.delete,
                "connections": options.connections,
                "profile": locations.s3_account.profile,
            }
            journal = ActionLog.start(output, "publish", config, locations.network)
        extra = {
            "deleted": len(plan.stale) if options.delete else 0,
            "created_bucket": plan.create_bucket,
            "public": options.public,
        }
        journal.add(
            Action(
                "publish",
                storages.NETWORK.name,
                fmt,
                str(plan.source),
                f"s3://{plan.bucket}",
                seconds,
                uploaded.files,
                uploaded.bytes,
                plan.skipped.files,
                plan.skipped.bytes,
                extra,
            )  # fmt: skip
        )
        log.info(
            "%s: %d objects (%.1f MB) uploaded, %d skipped, to s3://%s in %.1f s",
            fmt, uploaded.files, uploaded.bytes / 1e6, plan.skipped.files, plan.bucket, seconds,
        )  # fmt: skip
    return journal.path if journal else None


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser(__doc__.split("\n\n")[0], "python -m sentinel2_l1c.publish_s3")
    parser.add_argument(
        "--formats",
        nargs="+",
        default=list(formats.FORMATS),
        choices=formats.FORMATS,
        metavar="FORMAT",
        help=f"Formats to publish (default: all of {', '.join(formats.FORMATS)}).",
    )
    parser.add_argument(
        "--public",
        action="store_true",
        help="Apply the package's public-read-policy.json (anonymous GET and list) to these "
        "buckets only.",
    )
    parser.add_argument(
        "--delete", action="store_true", help="Remove objects that have no local counterpart."
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="Print what would be done; change nothing."
    )
    add_transfer_arguments(parser, "Concurrent uploads (files, or parts of a large file).")
    return parser


def _run(args: argparse.Namespace) -> int:
    locations = Locations.from_environment()
    options = PublishOptions(
        tuple(dict.fromkeys(args.formats)), args.public, args.delete, args.dry_run, args.connections
    )
    output = locations.results_folder(args.output)
    target = publish(options, locations, output, show_progress=not args.quiet)
    if target is not None:
        print(f"results: {target}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_cli(build_parser(), argv, _run)


if __name__ == "__main__":
    sys.exit(main())
