"""S3 requests and bytes per patch load, counted by a local proxy in front of the endpoint.

The proxy sees plain HTTP only, so counting is offered for ``http://`` endpoints on this
machine (the lab's); elsewhere the counts are left out rather than guessed.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit

from sentinel2_l1c.bench.config import BenchmarkConfig, Pair, plan_patch
from sentinel2_l1c.bench.run import catalogue, open_loader
from sentinel2_l1c.lab.object_store import Identity, write_aws_files
from sentinel2_l1c.lab.proxy import LabProxy
from sentinel2_l1c.storage.locations import Locations

log = logging.getLogger(__name__)
LOOPBACK = ("127.0.0.1", "localhost")


def requests_per_patch(
    config: BenchmarkConfig, locations: Locations, patches: int = 3
) -> dict[str, tuple[float, float]]:
    """Per results key of ``config``: S3 requests and response bytes per patch loaded from
    the ``s3`` storage (after opening and one warm-up load); {} when the endpoint is not
    plain HTTP on this machine."""
    account = locations.s3_account
    keys = account.keys()
    endpoint = urlsplit(keys.endpoint_url or "")
    if endpoint.scheme != "http" or endpoint.hostname not in LOOPBACK or endpoint.port is None:
        log.info("S3 requests are not counted: %s is not plain HTTP on this machine", endpoint)
        return {}
    counts = {}
    identity = Identity(account.profile, (), keys.access_key_id, keys.secret_access_key)
    with LabProxy(endpoint.port, every=None) as proxy, tempfile.TemporaryDirectory() as folder:
        files = write_aws_files(Path(folder), proxy.endpoint, {account.profile: identity})
        counted = replace(
            locations, aws_config_file=files.config, aws_credentials_file=files.credentials
        )
        found = catalogue(config, counted)
        for key in config.formats:
            loader = open_loader(Pair.parse("s3", key), counted, found)
            try:
                loader.load(plan_patch(config, -1))
                requests, sent = proxy.requests, proxy.response_bytes
                for repeat in range(patches):
                    loader.load(plan_patch(config, repeat))
                counts[key] = (
                    (proxy.requests - requests) / patches,
                    (proxy.response_bytes - sent) / patches,
                )
            finally:
                loader.close()
    return counts
