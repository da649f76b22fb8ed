"""Where things live in an offline lab folder: the ``DSLAB_*`` settings and ``Locations``.

One definition, used by the demo, ``lab.serve`` and the tests, following the registries: every
storage × format gets the storage's own naming (``storages.Storage.lab_settings``).
``.env.example`` carries the same values for the default lab folder ``lab`` (a test keeps the
two in step).
"""

from __future__ import annotations

from pathlib import Path

from sentinel2_l1c import formats
from sentinel2_l1c.storage import storages
from sentinel2_l1c.storage.locations import LOG_FOLDER, S3_PROFILE, Locations

LAB_S3_PROFILE = "dslab-lab-storage"


def source_root(lab: Path) -> Path:
    """The lab's stand-in for CDSE's ``eodata`` bucket contents (synthetic SAFE products)."""
    return lab / "eodata"


def network_drive(lab: Path) -> Path:
    """The lab's network drive: a plain folder, or where ``drive.NetworkDrive`` mounts."""
    return lab / storages.STORAGES["network"].name


def lab_environment(lab: Path) -> dict[str, str]:
    """Every ``DSLAB_*`` setting of a lab folder (network and temp storages are folders)."""
    settings: dict[str, str] = {}
    for storage in storages.STORAGES.values():
        for fmt in formats.FORMATS.values():
            settings.update(storage.lab_settings(lab, fmt))
    settings[S3_PROFILE] = LAB_S3_PROFILE
    settings[LOG_FOLDER] = str(lab / "logs")
    return settings


def lab_locations(lab: Path) -> Locations:
    """The lab folder's ``Locations`` (add the local CDSE's with ``LocalCdse.locations``)."""
    return Locations(lab_environment(lab))
