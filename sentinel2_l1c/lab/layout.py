"""Where things live in an offline lab folder, and the ``DSLAB_*`` settings that point there.

One definition, used by the demo and the tests; ``.env.example`` carries the same values for
the default lab folder ``lab`` (a test keeps the two in step).
"""

from __future__ import annotations

from pathlib import Path

from ..utils import FORMATS, location_variable

LAB_S3_PROFILE = "dslab-lab-storage"
_FILE_NAMES = {"zipzarr": "sentinel2_l1c_zipzarr.zip"}


def source_root(lab: Path) -> Path:
    """The lab's stand-in for CDSE's ``eodata`` bucket contents (synthetic SAFE products)."""
    return lab / "eodata"


def lab_environment(lab: Path) -> dict[str, str]:
    """Every ``DSLAB_*`` setting for a lab folder (network and temp storages are folders)."""
    settings: dict[str, str] = {}
    for storage in ("network", "temp"):
        for fmt in FORMATS:
            name = _FILE_NAMES.get(fmt, f"sentinel2_l1c_{fmt}")
            settings[location_variable(storage, fmt)] = str(lab / storage / name)
    for fmt in FORMATS:
        settings[location_variable("s3", fmt)] = f"sentinel2-l1c-{fmt.replace('_', '-')}"
    settings["DSLAB_S2L1C_S3_ZIPZARR_KEY"] = _FILE_NAMES["zipzarr"]
    settings["DSLAB_S2L1C_S3_PROFILE"] = LAB_S3_PROFILE
    settings["DSLAB_LOG_FOLDER"] = str(lab / "logs")
    return settings
