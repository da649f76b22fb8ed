"""Crash points: every writing command killed (SIGKILL) at the k-th file write, rename or fsync,
or before its k-th S3 request, then rerun: nothing visible claims to be complete while it is
not, and the rerun ends exactly where an uninterrupted run does (issue 16).

A command runs as a real process. File events are counted in it by ``crash_injector``
(``sitecustomize``, loaded only there); S3 requests by a proxy that kills the process before
forwarding its k-th request. CI tries a seeded sample of points per command;
``DSLAB_CRASH_SWEEP=N`` tries N points, ``DSLAB_CRASH_SWEEP=full`` every point (up to
``FULL_SWEEP_LIMIT``), and ``DSLAB_CRASH_REPORT=FILE`` appends what was tried as JSON lines.
GDAL writes COGs through its own file I/O: there the points are the Python-side writes and
the renames that make a product visible.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import random
import shutil
import signal
import subprocess
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import obstore.store
import pytest
import zarr
import zarr.storage

from sentinel2_l1c import formats
from sentinel2_l1c.cube.protocol import is_complete
from sentinel2_l1c.lab.cdse import LocalCdse
from sentinel2_l1c.lab.layout import LAB_S3_PROFILE, lab_environment
from sentinel2_l1c.lab.object_store import write_aws_files
from sentinel2_l1c.lab.proxy import LabProxy
from sentinel2_l1c.s2.listing import list_products
from sentinel2_l1c.storage import storages
from tests.helpers import Archive, storage

REPO = Path(__file__).resolve().parents[1]
INJECTOR = Path(__file__).resolve().parent / "crash_injector"
SWEEP = os.environ.get("DSLAB_CRASH_SWEEP", "")  # read at import: tests see no DSLAB_*
REPORT = os.environ.get("DSLAB_CRASH_REPORT")
FULL_SWEEP_LIMIT = 400
SAMPLE = {"file": 2, "s3": 1}  # points per command in CI
KILLED = -signal.SIGKILL


# -- running a command, killed or not --------------------------------------------------------


class KillingProxy(LabProxy):
    """Forwards S3 requests; kills ``victim`` when its ``kill_at``-th request arrives."""

    def __init__(self, upstream_port: int) -> None:
        super().__init__(upstream_port, every=None)
        self.kill_at = 0
        self.victim = 0

    def reset(self, kill_at: int = 0) -> None:
        with self.lock:
            self.requests, self.kill_at = 0, kill_at
            self.counter = itertools.count(1)

    def _fault_for(self, number: int) -> str | None:
        fault = super()._fault_for(number)
        if number == self.kill_at and self.victim:
            os.kill(self.victim, signal.SIGKILL)
            return "503"  # not forwarded: the request never reaches the store
        return fault


@dataclass
class Command:
    argv: list[str]  # after ``python -m sentinel2_l1c.``
    env: dict[str, str]


def run(command: Command, crash_at: int = 0, count: Path | None = None, proxy: KillingProxy | None = None, s3_kill_at: int = 0) -> tuple[int, str]:  # fmt: skip
    env = {
        **os.environ,
        **command.env,
        "PYTHONPATH": os.pathsep.join([str(INJECTOR), str(REPO)]),
        "DSLAB_CRASH_AT": str(crash_at or ""),
        "DSLAB_CRASH_COUNT": str(count or ""),
    }
    if proxy is not None:
        proxy.reset(s3_kill_at)
    process = subprocess.Popen(
        [sys.executable, "-m", f"sentinel2_l1c.{command.argv[0]}", *command.argv[1:], "--quiet"],
        env=env,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    if proxy is not None:
        proxy.victim = process.pid
    _, err = process.communicate(timeout=300)
    if process.returncode not in (0, KILLED) and b"error:" not in err:
        pytest.fail(f"{command.argv}: exit {process.returncode}\n{err.decode()[-3000:]}")
    return process.returncode, err.decode()[-2000:]


def tree(root: Path) -> dict[str, str]:
    """Relative name → SHA-256 of every visible file (a file: itself under "")."""
    if root.is_file():
        return {"": hashlib.sha256(root.read_bytes()).hexdigest()}
    if not root.is_dir():
        return {}
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
    }


def sub_tree(files: dict[str, str], prefix: str) -> dict[str, str]:
    return {k[len(prefix) + 1 :]: v for k, v in files.items() if k.startswith(prefix + "/")}


# -- scenarios: one per writing command ------------------------------------------------------


class Scenario(ABC):
    name: str
    s3: bool = False  # it makes S3 requests worth killing at

    @abstractmethod
    def prepare(self, work: Path) -> Command:
        """A fresh starting state in ``work``, and the command."""

    @abstractmethod
    def result(self, work: Path) -> object:
        """What the command made, comparable across work folders."""

    @abstractmethod
    def false_completes(self, work: Path, reference: object) -> list[str]:
        """Outputs that look complete after a kill but differ from the reference."""


@dataclass
class Lab:
    """What the scenarios share: the archive, the network storage, the local CDSE."""

    archive: Archive
    network: Path
    cdse: LocalCdse
    aws: dict[str, str] = field(default_factory=dict)  # AWS files pointing at the proxy

    def subset(self, work: Path, count: int = 3) -> Path:
        """A SAFE root with the first ``count`` products (links)."""
        root = work / "safe-in"
        for product in list_products(self.archive.root)[:count]:
            link = root / product.name.cdse_path
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(product.path)
        return root


class Intake(Scenario):
    name, s3 = "intake_cdse_s3", True

    def __init__(self, lab: Lab) -> None:
        self.lab = lab

    def prepare(self, work: Path) -> Command:
        assert self.lab.cdse.stac is not None
        env = {**self.lab.aws, "DSLAB_S2L1C_STAC_URL": self.lab.cdse.stac.url}
        argv = ["intake_cdse_s3", "--time-start", "2024-05-01T00:00:00Z", "--time-end",
                "2024-05-10T00:00:00Z", "--connections", "2", "--target", str(work / "safe")]  # fmt: skip
        return Command(argv, env)

    def result(self, work: Path) -> object:
        return tree(work / "safe")

    def false_completes(self, work: Path, reference: object) -> list[str]:
        found = tree(work / "safe")
        products = {name.rsplit("/", 1)[0] for name in found if name.endswith("/manifest.safe")}
        return [p for p in products if sub_tree(found, p) != sub_tree(reference, p)]  # type: ignore[arg-type]


class Cog(Scenario):
    name = "convert_safe_to_cog"

    def __init__(self, lab: Lab) -> None:
        self.lab = lab

    def prepare(self, work: Path) -> Command:
        source = self.lab.subset(work)
        return Command(["convert_safe_to_cog", "--source", str(source), "--target", str(work / "cog"), "--workers", "1"], {})  # fmt: skip

    def result(self, work: Path) -> object:
        return tree(work / "cog")

    def false_completes(self, work: Path, reference: object) -> list[str]:
        found = tree(work / "cog")
        products = {name.rsplit("/", 1)[0] for name in found}
        return [p for p in products if sub_tree(found, p) != sub_tree(reference, p)]  # type: ignore[arg-type]


class Zarr(Scenario):
    def __init__(self, lab: Lab, fmt: str) -> None:
        self.lab, self.fmt = lab, fmt
        self.name = f"convert_safe_to_zarr --format {fmt}"

    def prepare(self, work: Path) -> Command:
        source = self.lab.subset(work)
        argv = ["convert_safe_to_zarr", "--format", self.fmt, "--source", str(source),
                "--target", str(work / "zarr"), "--workers", "1"]  # fmt: skip
        return Command(argv, {})

    @staticmethod
    def groups(store: Path) -> dict[str, zarr.Group]:
        if not (store / "zarr.json").is_file():
            return {}
        root = zarr.open_group(str(store), mode="r", zarr_format=3)
        found = {}
        for tile, tile_group in root.groups():
            for year, year_group in tile_group.groups():
                for name, group in year_group.groups():
                    found[f"{tile}/{year}/{name}"] = group
        return found

    @staticmethod
    def contents(group: zarr.Group) -> dict[str, str]:
        return {
            name: hashlib.sha256(group[name][:].tobytes()).hexdigest()
            for name in ("data", "time", "product_id", "band", "x", "y")
        }

    def result(self, work: Path) -> object:
        groups = self.groups(work / "zarr")
        return {path: (is_complete(g), self.contents(g)) for path, g in groups.items()}

    def false_completes(self, work: Path, reference: object) -> list[str]:
        wrong = []
        for path, group in self.groups(work / "zarr").items():
            if is_complete(group) and (True, self.contents(group)) != reference[path]:  # type: ignore[index]
                wrong.append(path)
        return wrong


class Ingest(Scenario):
    """Five products into a sharded Zarr bucket (two rounds of dates), the bucket emptied
    before each point (as ``Publish``'s)."""

    s3 = True

    def __init__(self, lab: Lab, tag: str) -> None:
        self.lab, self.bucket = lab, f"crash-ingest-{tag}"
        self.name = "ingest"
        self.client = lab.cdse.store.client(lab.cdse.storage_user)

    def prepare(self, work: Path) -> Command:
        if self.bucket in {b["Name"] for b in self.client.list_buckets()["Buckets"]}:
            for item in self.client.list_objects_v2(Bucket=self.bucket).get("Contents", []):
                self.client.delete_object(Bucket=self.bucket, Key=item["Key"])
        else:
            self.client.create_bucket(Bucket=self.bucket)
        assert self.lab.cdse.stac is not None
        env = {**lab_environment(self.lab.network), **self.lab.aws,
               "DSLAB_S2L1C_STAC_URL": self.lab.cdse.stac.url}  # fmt: skip
        argv = ["ingest", "--tiles", "35VLH", "--time-start", "2024-05-01T00:00:00Z",
                "--time-end", "2024-05-20T00:00:00Z", "--connections", "2", "--workers", "1",
                "--target", f"s3://{self.bucket}", "--source", str(work / "scratch")]  # fmt: skip
        return Command(argv, env)

    def groups(self) -> dict[str, zarr.Group]:
        store = zarr.storage.ObjectStore(
            obstore.store.S3Store(
                self.bucket, endpoint=self.lab.cdse.store.endpoint, region="us-east-1",
                access_key_id=self.lab.cdse.storage_user.access_key,
                secret_access_key=self.lab.cdse.storage_user.secret_key,
                client_options={"allow_http": True}, virtual_hosted_style_request=False,
            ),
            read_only=True,
        )  # fmt: skip
        try:
            root = zarr.open_group(store, mode="r", zarr_format=3)
        except FileNotFoundError:
            return {}
        return {
            f"{tile}/{year}/{name}": group
            for tile, tile_group in root.groups()
            for year, year_group in tile_group.groups()
            for name, group in year_group.groups()
        }

    def result(self, work: Path) -> object:
        scratch = sorted(p.name for p in (work / "scratch").rglob("*.jp2"))
        groups = {p: (is_complete(g), Zarr.contents(g)) for p, g in self.groups().items()}
        return groups, scratch

    def false_completes(self, work: Path, reference: object) -> list[str]:
        expected = reference[0]  # type: ignore[index]
        return [
            path
            for path, group in self.groups().items()
            if is_complete(group) and (True, Zarr.contents(group)) != expected[path]
        ]


class ZipZarr(Scenario):
    name = "zip_zarr"

    def __init__(self, lab: Lab) -> None:
        self.lab = lab

    def prepare(self, work: Path) -> Command:
        shutil.copytree(storage(self.lab.network, "network", "zarr"), work / "zarr")
        return Command(["zip_zarr", "--source", str(work / "zarr"), "--target", str(work / "z.zip")], {})  # fmt: skip

    def result(self, work: Path) -> object:
        return tree(work / "z.zip")

    def false_completes(self, work: Path, reference: object) -> list[str]:
        found = tree(work / "z.zip")
        return ["z.zip"] if found and found != reference else []


class Publish(Scenario):
    """Into one pair of buckets per test, emptied before each point: every bucket is a
    SeaweedFS collection holding volumes of its own, and the lab server has a few hundred."""

    name, s3 = "publish_s3", True

    def __init__(self, lab: Lab, tag: str) -> None:
        self.lab = lab
        self.buckets = {fmt: f"crash-{tag}-{fmt.replace('_', '-')}" for fmt in ("zarr", "zipzarr")}
        self.client = lab.cdse.store.client(lab.cdse.storage_user)

    def prepare(self, work: Path) -> Command:
        present = {b["Name"] for b in self.client.list_buckets()["Buckets"]}
        for bucket in set(self.buckets.values()) & present:
            for upload in self.client.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
                self.client.abort_multipart_upload(
                    Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                )
            for item in self.client.list_objects_v2(Bucket=bucket).get("Contents", []):
                self.client.delete_object(Bucket=bucket, Key=item["Key"])
        env = {
            **lab_environment(self.lab.network),
            **self.lab.aws,
            "DSLAB_LOG_FOLDER": str(work / "logs"),
        }
        for fmt, bucket in self.buckets.items():
            env[storages.S3.variables(formats.get(fmt))[0]] = bucket
        return Command(["publish_s3", "--formats", "zarr", "zipzarr"], env)

    def result(self, work: Path) -> object:
        found = {}
        for fmt, bucket in self.buckets.items():
            try:
                listed = self.client.list_objects_v2(Bucket=bucket).get("Contents", [])
            except self.client.exceptions.NoSuchBucket:
                listed = []
            found[fmt] = {
                o["Key"]: hashlib.sha256(
                    self.client.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
                ).hexdigest()
                for o in listed
            }
        return found

    def false_completes(self, work: Path, reference: object) -> list[str]:
        found = self.result(work)
        return [
            f"s3://{fmt}/{key}"
            for fmt, objects in found.items()  # type: ignore[attr-defined]
            for key, digest in objects.items()
            if reference[fmt].get(key) != digest  # type: ignore[index]
        ]


class Stage(Scenario):
    name, s3 = "stage", True

    def __init__(self, lab: Lab) -> None:
        self.lab = lab

    def prepare(self, work: Path) -> Command:
        env = {
            **lab_environment(self.lab.network),
            **self.lab.aws,
            "DSLAB_LOG_FOLDER": str(work / "logs"),
        }
        for fmt in ("zarr", "zipzarr"):  # temp in this work folder; S3 as published by the fixture
            env[storages.TEMP.variables(formats.get(fmt))[0]] = str(storage(work, "temp", fmt))
            env[storages.S3.variables(formats.get(fmt))[0]] = f"crash-source-{fmt}"
        argv = ["stage", "--from-network", "zarr", "zipzarr", "--from-s3", "zarr", "zipzarr",
                "--unzip", "--stream-unzip"]  # fmt: skip
        return Command(argv, env)

    def result(self, work: Path) -> object:
        return {fmt: tree(storage(work, "temp", fmt)) for fmt in ("zarr", "zipzarr")}

    def false_completes(self, work: Path, reference: object) -> list[str]:
        found = self.result(work)
        return [fmt for fmt, files in found.items() if files and files != reference[fmt]]  # type: ignore[attr-defined,index]


# -- the sweep --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lab(archive: Archive, network_lab: Path, local_cdse: LocalCdse, tmp_path_factory: pytest.TempPathFactory) -> Lab:  # fmt: skip
    """The shared lab, its zarr and zipped zarr published as the stage scenario's source."""
    client = local_cdse.store.client(local_cdse.storage_user)
    present = {b["Name"] for b in client.list_buckets()["Buckets"]}
    for fmt in ("zarr", "zipzarr"):
        bucket, source = f"crash-source-{fmt}", storage(network_lab, "network", fmt)
        if bucket not in present:
            client.create_bucket(Bucket=bucket)
        key = (
            lab_environment(network_lab)["DSLAB_S2L1C_S3_ZIPZARR_KEY"] if source.is_file() else None
        )
        for path in [source] if key else [p for p in source.rglob("*") if p.is_file()]:
            client.upload_file(str(path), bucket, key or path.relative_to(source).as_posix())
    return Lab(archive, network_lab, local_cdse)


SCENARIOS: dict[str, Callable[[Lab, str], Scenario]] = {
    "intake": lambda lab, kind: Intake(lab),
    "cog": lambda lab, kind: Cog(lab),
    "zarr": lambda lab, kind: Zarr(lab, "zarr"),
    "zarr_sharded": lambda lab, kind: Zarr(lab, "zarr_sharded"),
    "zipzarr": lambda lab, kind: ZipZarr(lab),
    "publish": lambda lab, kind: Publish(lab, kind),
    "stage": lambda lab, kind: Stage(lab),
    "ingest": lambda lab, kind: Ingest(lab, kind),
}
#: Every scenario is killed at file events; those that talk to S3 also at S3 requests.
CASES = [(name, "file") for name in SCENARIOS] + [
    (name, "s3") for name in ("intake", "publish", "stage", "ingest")
]


def points(total: int, kind: str, seed: str) -> list[int]:
    if SWEEP == "full":
        return list(range(1, min(total, FULL_SWEEP_LIMIT) + 1))
    wanted = int(SWEEP) if SWEEP.isdigit() else SAMPLE[kind]
    return sorted(random.Random(seed).sample(range(1, total + 1), min(wanted, total)))


@pytest.mark.filterwarnings("ignore:Object at .* is not recognized:UserWarning")
@pytest.mark.parametrize(("name", "kind"), CASES)
def test_killed_anywhere_and_rerun(name: str, kind: str, lab: Lab, tmp_path: Path) -> None:
    scenario = SCENARIOS[name](lab, kind)
    assert kind == "file" or scenario.s3, f"{scenario.name} makes no S3 requests"
    with KillingProxy(lab.cdse.store.s3_port) as proxy:
        files = write_aws_files(
            tmp_path / "aws", proxy.endpoint,
            {LAB_S3_PROFILE: lab.cdse.storage_user, "cdse": lab.cdse.cdse_user},
        )  # fmt: skip
        lab.aws = files.environment()
        command = scenario.prepare(tmp_path / "reference")
        counted = tmp_path / "events"
        expected, _ = run(command, count=counted, proxy=proxy)
        total = int(counted.read_text()) if kind == "file" else proxy.requests
        reference = scenario.result(tmp_path / "reference")
        tried, killed, false_completes = [], 0, []
        for k in points(total, kind, f"{name}/{kind}"):
            work = tmp_path / f"k{k}"
            command = scenario.prepare(work)
            code, _ = run(command, crash_at=k if kind == "file" else 0, proxy=proxy, s3_kill_at=k if kind == "s3" else 0)  # fmt: skip
            killed += code == KILLED
            false_completes += [
                f"k={k}: {wrong}" for wrong in scenario.false_completes(work, reference)
            ]
            code, err = run(command, proxy=proxy)
            assert code == expected, f"rerun after a kill at {kind} event {k}: {err}"
            assert scenario.result(work) == reference, f"rerun after a kill at event {k}"
            tried.append(k)
    record = {"command": scenario.name, "kind": kind, "events": total, "tried": len(tried),
              "killed": killed, "identical_reruns": len(tried), "false_completes": len(false_completes)}  # fmt: skip
    if REPORT:
        with open(REPORT, "a") as report:
            report.write(json.dumps(record) + "\n")
    assert false_completes == []
