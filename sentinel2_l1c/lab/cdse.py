"""The lab's stand-in for the Copernicus Data Space Ecosystem: S3 bucket ``eodata`` + STAC API.

SeaweedFS serves the synthetic products under ``eodata`` in CDSE's key layout, and the STAC
API indexes every product of the source folder (duplicates included, as CDSE lists them).
``locations()`` points a ``Locations`` at it (``environment()`` does the same for a child
process): intake uses the same profile name (``cdse``) and code path as against the real
CDSE; only endpoints differ. With network profiles (``network.py``) the CDSE and storage
profiles reach SeaweedFS through shaping proxies, each in a process of its own; the lab's own
seeding of ``eodata`` goes direct. With a ``drive`` profile the lab's network drive is a
shaped FUSE mount of the same SeaweedFS (``drive.py``); without one, a plain folder. With
``service`` it also starts the coverage service (``coverage_service``) over the network
drive's sharded Zarr, reached through the storage's profile, as a service beside the data
centre's object storage would be.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path

from boto3.s3.transfer import TransferConfig

from sentinel2_l1c import formats
from sentinel2_l1c.coverage_service import ServiceProcess
from sentinel2_l1c.lab.drive import NetworkDrive
from sentinel2_l1c.lab.layout import LAB_S3_PROFILE, lab_locations, network_drive
from sentinel2_l1c.lab.network import PROFILES, NetworkProfile
from sentinel2_l1c.lab.object_store import AwsFiles, Identity, SeaweedFS, write_aws_files
from sentinel2_l1c.lab.proxy import ProxyProcess
from sentinel2_l1c.lab.stac_api import SOURCE_BUCKET, StacApi
from sentinel2_l1c.s2.listing import safe_folders
from sentinel2_l1c.s2.names import SafeName
from sentinel2_l1c.s2.product import SafeProduct
from sentinel2_l1c.storage import storages
from sentinel2_l1c.storage.locations import CDSE_PROFILE as CDSE_PROFILE_VARIABLE
from sentinel2_l1c.storage.locations import LAB_NETWORK, STAC_URL, Locations

log = logging.getLogger(__name__)

CDSE_PROFILE = "cdse"
ADMIN_PROFILE = "dslab-lab-admin"
UPLOAD_THREADS = 8
#: files upload in parallel, their parts one after the other (the client's pool holds 10)
ONE_PART_AT_A_TIME = TransferConfig(use_threads=False)


class LocalCdse:
    """Start with ``with LocalCdse(lab, source) as cdse:``; stops its servers on exit."""

    def __init__(
        self,
        lab: Path,
        source_root: Path,
        network: NetworkProfile = PROFILES["loopback"],
        cdse_network: NetworkProfile = PROFILES["loopback"],
        drive: NetworkProfile | None = None,
        service: bool = False,
    ) -> None:
        self.lab = Path(lab)
        self.networks = {"s3": network, "cdse": cdse_network}
        self.drive_network = drive
        self.drive: NetworkDrive | None = None
        self.proxies = ExitStack()
        self.source_root = Path(source_root)
        self.admin = Identity("admin", ("Admin", "Read", "Write", "List", "Tagging"))
        self.cdse_user = Identity("cdse", (f"Read:{SOURCE_BUCKET}", f"List:{SOURCE_BUCKET}"))
        self.storage_user = Identity("storage", ("Admin", "Read", "Write", "List", "Tagging"))
        self.store = SeaweedFS(
            self.lab / "seaweedfs",
            [self.admin, self.cdse_user, self.storage_user],
            filer_http=drive is not None,
        )
        self.stac: StacApi | None = None
        self.aws_files: AwsFiles | None = None
        self.service: ServiceProcess | None = None
        self.service_url = ""
        # the format the service storage serves (one: the lab starts one coverage service)
        (self.served,) = (formats.get(name) for name in storages.SERVICE.serves)
        if service:
            self.service = ServiceProcess(
                storages.NETWORK.path(lab_locations(self.lab), self.served)
            )

    def start(self) -> LocalCdse:
        self.store.start()
        try:
            if self.drive_network is not None:
                drive = NetworkDrive(network_drive(self.lab), self.store, self.drive_network)
                self.drive = self.proxies.enter_context(drive)
            network_drive(self.lab).mkdir(parents=True, exist_ok=True)
            if self.service is not None:  # imports its stack while the other servers start
                self.service.start()
            endpoints = {}
            for profile, network in ((LAB_S3_PROFILE, "s3"), (CDSE_PROFILE, "cdse")):
                if self.networks[network].shaped:
                    proxy = ProxyProcess(self.store.s3_port, self.networks[network])
                    endpoints[profile] = self.proxies.enter_context(proxy).endpoint
            self.aws_files = write_aws_files(
                self.lab / "aws",
                self.store.endpoint,
                {
                    CDSE_PROFILE: self.cdse_user,
                    LAB_S3_PROFILE: self.storage_user,
                    ADMIN_PROFILE: self.admin,
                },
                endpoints,
            )
            folders = safe_folders(self.source_root)
            self.publish(folders)
            products = (SafeProduct.from_path(folder) for folder in folders)
            self.stac = StacApi.from_products(products, catalogues=self.catalogues()).start()
            if self.service is not None:
                self.service_url = self._shaped(self.service.wait(), self.networks["s3"])
        except BaseException:
            self.stop()
            raise
        return self

    def catalogues(self) -> dict[str, Path]:
        """The folders on the network drive whose STAC the STAC API serves: each tree format's."""
        locations = lab_locations(self.lab)
        return {
            fmt.name: storages.NETWORK.path(locations, fmt)
            for fmt in formats.FORMATS.values()
            if not fmt.is_archive
        }

    def _shaped(self, endpoint: str, network: NetworkProfile) -> str:
        """``endpoint``, or a proxy shaping it by ``network``."""
        if not network.shaped:
            return endpoint
        proxy = ProxyProcess(int(endpoint.rsplit(":", 1)[1]), network)
        return self.proxies.enter_context(proxy).endpoint

    def stop(self) -> None:
        if self.service is not None:
            self.service.stop()
        if self.stac is not None:
            self.stac.stop()
            self.stac = None
        self.proxies.close()
        self.store.stop()

    def __enter__(self) -> LocalCdse:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def drive_description(self) -> str:
        """What the lab's network drive is: a shaped mount (and its profile) or a folder."""
        return self.drive.describe() if self.drive else "folder"

    def settings(self) -> dict[str, str]:
        """The ``DSLAB_*`` settings that point intake at this stand-in."""
        assert self.stac is not None, "start() first"
        networks = {LAB_NETWORK[k]: network.describe() for k, network in self.networks.items()}
        networks[LAB_NETWORK["drive"]] = self.drive_description
        service = (
            {storages.SERVICE.variables(self.served)[0]: self.service_url}
            if self.service_url
            else {}
        )
        return {STAC_URL: self.stac.url, CDSE_PROFILE_VARIABLE: CDSE_PROFILE, **networks, **service}

    def locations(self, base: Locations) -> Locations:
        """``base`` pointed at this stand-in and the lab's AWS files (profiles of both the
        CDSE source and the lab's own S3 storage)."""
        assert self.aws_files is not None, "start() first"
        return replace(
            base.with_settings(self.settings()),
            aws_config_file=self.aws_files.config,
            aws_credentials_file=self.aws_files.credentials,
        )

    def environment(self) -> dict[str, str]:
        """The same for a child process: the settings and the variables naming the AWS files
        (read by boto3, s3fs and GDAL)."""
        assert self.aws_files is not None, "start() first"
        return {**self.aws_files.environment(), **self.settings()}

    def admin_client(self):  # -> botocore S3 client
        return self.store.client(self.admin)

    def publish(self, folders: list[Path]) -> None:
        """Upload product folders to ``eodata`` in CDSE layout, skipping objects already there."""
        client = self.admin_client()
        if SOURCE_BUCKET not in {b["Name"] for b in client.list_buckets().get("Buckets", [])}:
            client.create_bucket(Bucket=SOURCE_BUCKET)
        present = {
            obj["Key"]: obj["Size"]
            for page in client.get_paginator("list_objects_v2").paginate(Bucket=SOURCE_BUCKET)
            for obj in page.get("Contents", [])
        }
        uploads = [
            (path, path.relative_to(self.source_root).as_posix())
            for folder in folders
            for path in sorted(folder.rglob("*"))
            if path.is_file()
        ]
        uploads = [(p, k) for p, k in uploads if present.get(k) != p.stat().st_size]
        with ThreadPoolExecutor(UPLOAD_THREADS) as pool:
            list(
                pool.map(
                    lambda job: client.upload_file(
                        str(job[0]), SOURCE_BUCKET, job[1], Config=ONE_PART_AT_A_TIME
                    ),
                    uploads,
                )
            )
        log.info(
            "published %d objects of %d products to %s", len(uploads), len(folders), SOURCE_BUCKET
        )

    def remove_product(self, name: SafeName) -> int:
        """Delete a product's objects (CDSE sometimes lists products it does not hold)."""
        client = self.admin_client()
        prefix = f"{name.cdse_path}/"
        keys = [
            obj["Key"]
            for page in client.get_paginator("list_objects_v2").paginate(
                Bucket=SOURCE_BUCKET, Prefix=prefix
            )
            for obj in page.get("Contents", [])
        ]
        for key in keys:
            client.delete_object(Bucket=SOURCE_BUCKET, Key=key)
        return len(keys)
