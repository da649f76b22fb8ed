"""Network profiles of the lab's object stores: how far from loopback a measurement is taken.

A profile is the per-request first-byte latency, the bandwidth of one connection and of all
together, and how many requests the server serves at once (more wait their turn, as behind a
per-user quota); for the network drive also the latency of each metadata request. The lab's
proxies (``proxy.py``) apply one between the clients and SeaweedFS: its S3 gateway, or the
filer behind the lab's network drive (``drive.py``). Named profiles live here; ``parse``
also takes free parameters or a name with overrides (``allas,latency_ms=60``). Bandwidths are
in megabytes per second (10⁶ B/s). ``fault_every=N`` breaks every N-th S3 request (a body cut
short, a 503, in turn), for long runs under faults (``fault_every=20``: 5 %).
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, replace

from sentinel2_l1c.errors import ConfigError


@dataclass(frozen=True)
class NetworkProfile:
    name: str = "custom"
    latency_ms: float = 0.0  # added before the first byte of every request
    mbps: float | None = None  # bandwidth of one connection, MB/s (None: unlimited)
    total_mbps: float | None = None  # bandwidth of all connections together, MB/s
    connections: int | None = None  # requests served at once (None: unlimited)
    metadata_ms: float = 0.0  # added to every metadata request (the network drive's)
    fault_every: int | None = None  # every N-th S3 request fails (None: none)

    def __post_init__(self) -> None:
        for label in ("latency_ms", "metadata_ms"):
            if getattr(self, label) < 0:
                raise ConfigError(f"network profile {self.name}: {label} must not be negative")
        for label in ("mbps", "total_mbps", "connections", "fault_every"):
            value = getattr(self, label)
            if value is not None and value <= 0:
                raise ConfigError(f"network profile {self.name}: {label} must be positive")

    @property
    def shaped(self) -> bool:
        """Whether it changes anything (``loopback`` does not: no proxy is needed)."""
        return any(v for k, v in asdict(self).items() if k != "name")

    def parameters(self) -> str:
        """``latency_ms=…,mbps=…``: what is set, as ``parse`` reads it back ("" if nothing)."""
        return ",".join(f"{k}={v:g}" for k, v in asdict(self).items() if k != "name" and v)

    def describe(self) -> str:
        """``name: latency_ms=…,mbps=…``; recorded with every result."""
        return f"{self.name}: {self.parameters() or 'unshaped'}"


#: Calibration of ``lustre`` (docs/network-profiles.md): through the lab's network drive,
#: Zarr patch loads take 5.7–9× and COG loads 12–25× those from temp at one patch in flight,
#: as the first version measured between Puhti's /scratch and a node's NVMe.
LUSTRE_LATENCY_MS = 8.0
LUSTRE_METADATA_MS = 2.0
LUSTRE_MBPS = 125.0
#: also the mount's read-ahead (``drive.py``); a Lustre client's default RPCs in flight
LUSTRE_RPCS_IN_FLIGHT = 8
#: Calibration of ``allas`` (docs/network-profiles.md): with it, the lab's S3 Zarr patch
#: loads take 6.7–8.1× (9.7× in the scale-2 run) and COG loads 5–7× those from temp at one
#: patch in flight, as the first version measured (7.8×, 7.1×) between Allas and a Puhti node.
PROFILES = {
    "loopback": NetworkProfile("loopback"),
    "cdse": NetworkProfile("cdse", latency_ms=50, mbps=20, connections=4),
    "allas": NetworkProfile("allas", latency_ms=40, mbps=40, total_mbps=80, connections=64),
    "lustre": NetworkProfile(
        "lustre",
        latency_ms=LUSTRE_LATENCY_MS,
        mbps=LUSTRE_MBPS,
        total_mbps=LUSTRE_MBPS,
        connections=LUSTRE_RPCS_IN_FLIGHT,
        metadata_ms=LUSTRE_METADATA_MS,
    ),  # fmt: skip
}

_FIELDS = {
    "latency_ms": float, "mbps": float, "total_mbps": float, "connections": int,
    "metadata_ms": float, "fault_every": int,
}  # fmt: skip


def parse(text: str) -> NetworkProfile:
    """A profile from ``NAME``, ``key=value,…`` or ``NAME,key=value,…``; ConfigError if bad."""
    parts = [part.strip() for part in text.split(",") if part.strip()]
    profile = NetworkProfile()
    if parts and "=" not in parts[0]:
        name = parts.pop(0)
        if name not in PROFILES:
            raise ConfigError(
                f"unknown network profile {name!r} (known: {', '.join(PROFILES)}; or "
                f"{'=…,'.join(_FIELDS)}=…)"
            )
        profile = PROFILES[name]
    changes: dict[str, float | int] = {}
    for part in parts:
        key, _, value = part.partition("=")
        if key not in _FIELDS:
            raise ConfigError(f"network profile {text!r}: unknown parameter {key!r}")
        try:
            changes[key] = _FIELDS[key](value)
        except ValueError:
            raise ConfigError(
                f"network profile {text!r}: {key} needs a number, got {value!r}"
            ) from None
    if not parts and profile.name == "custom":
        raise ConfigError("empty network profile")
    named = profile.name if not changes or profile.name == "custom" else f"{profile.name}*"
    return replace(profile, name=named, **changes)


def option(text: str) -> NetworkProfile:
    """argparse ``type=`` of ``--network``/``--cdse-network``."""
    try:
        return parse(text)
    except ConfigError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


FOLDER = "folder"  # --drive-network: the network drive is a plain local folder


def drive_option(text: str) -> NetworkProfile | None:
    """argparse ``type=`` of ``--drive-network``: a profile, or None for ``folder``."""
    if text == FOLDER:
        return None
    try:
        return parse(text)
    except ConfigError as err:
        raise argparse.ArgumentTypeError(f"{err}; or {FOLDER!r} for a plain folder") from None


def add_arguments(parser: argparse.ArgumentParser, s3: str, cdse: str, drive: str) -> None:
    """``--network`` (the lab's S3 storage), ``--cdse-network`` and ``--drive-network``."""
    known = ", ".join(p.describe() for p in PROFILES.values())
    parser.add_argument(
        "--network", type=option, default=s3, metavar="PROFILE",
        help=f"Network profile of the lab's S3 storage: a name ({known}), key=value,… "
        "parameters (latency_ms, mbps, total_mbps in MB/s, connections, fault_every: every "
        "N-th request fails) or a name with overrides (allas,latency_ms=80).",
    )  # fmt: skip
    parser.add_argument(
        "--cdse-network", type=option, default=cdse, metavar="PROFILE",
        help="Network profile of the lab's CDSE (its eodata bucket), as --network.",
    )  # fmt: skip
    parser.add_argument(
        "--drive-network", type=drive_option, default=drive, metavar="PROFILE",
        help="The lab's network drive: a FUSE mount of its SeaweedFS filer shaped by this "
        "profile (as --network, plus metadata_ms; connections also bounds the mount's "
        "read-ahead; lustre answers like Puhti's /scratch), or "
        f"{FOLDER!r} for a plain local folder (also where FUSE is missing) "
        f"(default: {drive}).",
    )  # fmt: skip
