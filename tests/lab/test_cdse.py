"""The local CDSE keeps its keys and data to its owner."""

from __future__ import annotations

from pathlib import Path

import requests

from sentinel2_l1c.lab.cdse import LocalCdse


def test_lab_files_and_ports_are_private(local_cdse: LocalCdse) -> None:
    """Keys are in files only their owner reads; the filer's HTTP port serves no bucket."""
    for path in [
        *(local_cdse.lab / "aws").glob("*"),
        local_cdse.store.data_dir / "s3-identities.json",
    ]:
        if "credentials" in path.name or path.suffix in (".cfg", ".json"):
            assert path.stat().st_mode & 0o777 == 0o600, path
    command = Path(f"/proc/{local_cdse.store.process.pid}/cmdline").read_text().split("\0")
    filer = next(a for a in command if a.startswith("-filer.port=")).split("=")[1]
    key = local_cdse.store.client(local_cdse.admin).list_objects_v2(Bucket="eodata", MaxKeys=1)
    url = f"http://127.0.0.1:{filer}/buckets/eodata/{key['Contents'][0]['Key']}"
    assert requests.get(url, timeout=10).status_code == 404
    assert (
        requests.put(
            f"http://127.0.0.1:{filer}/buckets/eodata/x", data=b"x", timeout=10
        ).status_code
        == 404
    )
