"""Configuration resolved once per command: where things live and which S3 accounts to use.

A command builds one ``Locations`` at its start, from the environment and a ``.env`` file in
the working directory (which never overrides variables already set), and passes it to the
library, which never reads the environment itself. The lab and the tests build theirs in code.
Values are checked when they are used, so a command fails only on the settings it needs, with
one line naming the variable and ``.env.example``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import dotenv

from sentinel2_l1c.errors import ConfigError
from sentinel2_l1c.storage.retry import RetryPolicy
from sentinel2_l1c.storage.s3_account import S3Account

ENV_EXAMPLE = ".env.example"
PREFIX = "DSLAB_"
DEFAULT_STAC_URL = "https://stac.dataspace.copernicus.eu/v1"
DEFAULT_CDSE_PROFILE = "cdse"
DEFAULT_CDSE_CONNECTIONS = 4  # CDSE's quota of concurrent connections per user

LOG_FOLDER = "DSLAB_LOG_FOLDER"
STAC_URL = "DSLAB_S2L1C_STAC_URL"
CDSE_PROFILE = "DSLAB_S2L1C_CDSE_PROFILE"
CDSE_CONNECTIONS = "DSLAB_S2L1C_CDSE_CONNECTIONS"
S3_PROFILE = "DSLAB_S2L1C_S3_PROFILE"
NETWORK_TIMEOUT = "DSLAB_NETWORK_TIMEOUT"
NETWORK_ATTEMPTS = "DSLAB_NETWORK_ATTEMPTS"
# Set by the lab: the network profiles its S3 storage and CDSE answer with (lab/network.py).
LAB_NETWORK = {
    "s3": "DSLAB_LAB_NETWORK", "cdse": "DSLAB_LAB_CDSE_NETWORK", "drive": "DSLAB_LAB_DRIVE_NETWORK",
}  # fmt: skip

_VAR_REF_RE = re.compile(r"\$\{([^}:]+)(?::-[^}]*)?\}")
# Lower-case letters, digits, dots, hyphens and (Ceph/Allas legacy) underscores, 3-63 chars.
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$")


def read_env_file(path: Path) -> tuple[dict[str, str], dict[str, str]]:
    """Values of a ``.env`` file (``${VAR}`` expanded) and, per variable, why it is unusable.

    python-dotenv expands a reference to an unset variable to "", which would otherwise pass
    silently. Variables that are not ``DSLAB_*`` (``AWS_CONFIG_FILE``, GDAL options) are put
    into the environment when unset there, for the libraries that read them.
    """
    if not path.is_file():
        return {}, {}
    problems: dict[str, str] = {}
    defined_in_file: set[str] = set()
    for name, value in dotenv.dotenv_values(path, interpolate=False).items():
        if value is not None:
            missing = [
                ref for ref in _VAR_REF_RE.findall(value)
                if ref not in os.environ and ref not in defined_in_file
            ]  # fmt: skip
            if missing:
                refs = ", ".join(f"${{{ref}}}" for ref in missing)
                problems[name] = (
                    f"environment variable {name} in .env refers to {refs}, which is not set "
                    f"(see {ENV_EXAMPLE})"
                )
        defined_in_file.add(name)
    values = {k: v for k, v in dotenv.dotenv_values(path).items() if v is not None}
    for name, value in values.items():
        if not name.startswith(PREFIX):
            os.environ.setdefault(name, value)
    return values, problems


@dataclass(frozen=True)
class Locations:
    """``DSLAB_*`` settings and the AWS files of the profiles they name.

    ``problems`` holds, per variable, why its value cannot be used (raised when it is asked
    for). ``aws_config_file``/``aws_credentials_file`` of None mean boto3's own lookup
    (``~/.aws`` or ``AWS_CONFIG_FILE``/``AWS_SHARED_CREDENTIALS_FILE``).
    """

    settings: Mapping[str, str] = field(default_factory=dict)
    problems: Mapping[str, str] = field(default_factory=dict)
    aws_config_file: Path | None = None
    aws_credentials_file: Path | None = None

    @classmethod
    def from_environment(cls, env_file: Path | None = None) -> Locations:
        """Every ``DSLAB_*`` variable of the environment, and of ``.env`` (default: in the
        working directory) where the environment does not set it."""
        values, problems = read_env_file((env_file or Path.cwd() / ".env").resolve())
        settings = {name: value for name, value in values.items() if name.startswith(PREFIX)}
        settings.update((k, v) for k, v in os.environ.items() if k.startswith(PREFIX))
        return cls(settings, {k: why for k, why in problems.items() if k not in os.environ})

    def with_settings(self, settings: Mapping[str, str]) -> Locations:
        """A copy with ``settings`` added or replaced (command-line flags, the lab)."""
        problems = {name: why for name, why in self.problems.items() if name not in settings}
        return replace(self, settings={**self.settings, **settings}, problems=problems)

    # -- typed values -------------------------------------------------------------------

    def text(self, name: str, default: str | None = None) -> str:
        """The value of ``name``; ConfigError when unset (without default), empty or unusable."""
        if name in self.problems:
            raise ConfigError(self.problems[name])
        value = self.settings.get(name)
        if value is None:
            if default is not None:
                return default
            raise ConfigError(
                f"environment variable {name} is not set: set it or add it to .env "
                f"(see {ENV_EXAMPLE})"
            )
        if not value.strip():
            raise ConfigError(f"environment variable {name} is empty (see {ENV_EXAMPLE})")
        return value.strip()

    def integer(self, name: str, default: int | None = None, minimum: int | None = None) -> int:
        text = self.text(name, None if default is None else str(default))
        try:
            number = int(text)
        except ValueError:
            raise ConfigError(
                f"environment variable {name} must be an integer, got {text!r} (see {ENV_EXAMPLE})"
            ) from None
        if minimum is not None and number < minimum:
            raise ConfigError(
                f"environment variable {name} must be at least {minimum}, got {number} "
                f"(see {ENV_EXAMPLE})"
            )
        return number

    def path(self, name: str) -> Path:
        return Path(self.text(name)).expanduser()

    @staticmethod
    def valid_bucket(bucket: str) -> bool:
        return bool(_BUCKET_RE.match(bucket)) and ".." not in bucket

    def bucket(self, name: str) -> str:
        """A bucket name, checked against S3's naming rules."""
        bucket = self.text(name)
        if not self.valid_bucket(bucket):
            raise ConfigError(
                f"environment variable {name} is not a valid S3 bucket name: {bucket!r} "
                f"(3-63 lower-case letters, digits, '.', '-', '_'; see {ENV_EXAMPLE})"
            )
        return bucket

    def account(self, name: str, default: str | None = None) -> S3Account:
        """The S3 account of the boto3 profile named by variable ``name``."""
        return S3Account(
            self.text(name, default), self.aws_config_file, self.aws_credentials_file, self.retry
        )

    @property
    def retry(self) -> RetryPolicy:
        """Deadlines and attempts of every network call: DSLAB_NETWORK_TIMEOUT (seconds to wait
        for an answer, default 60; connections get at most 10) and DSLAB_NETWORK_ATTEMPTS
        (default 6)."""
        default = RetryPolicy()
        read = self.text(NETWORK_TIMEOUT, str(default.read_timeout))
        try:
            seconds = float(read)
        except ValueError:
            seconds = 0.0
        if seconds <= 0:
            raise ConfigError(
                f"environment variable {NETWORK_TIMEOUT} must be a positive number of seconds, "
                f"got {read!r} (see {ENV_EXAMPLE})"
            )
        attempts = self.integer(NETWORK_ATTEMPTS, default.attempts, minimum=1)
        return RetryPolicy(
            attempts=attempts,
            connect_timeout=min(default.connect_timeout, seconds),
            read_timeout=seconds,
        )

    # -- settings every command shares ----------------------------------------------------

    def results_folder(self, override: Path | None = None) -> Path:
        """Folder of timestamped result files: ``override`` (``--output``) or DSLAB_LOG_FOLDER."""
        return override if override is not None else self.path(LOG_FOLDER)

    @property
    def s3_account(self) -> S3Account:
        """The account of the ``s3`` storage (DSLAB_S2L1C_S3_PROFILE)."""
        return self.account(S3_PROFILE)

    @property
    def cdse_account(self) -> S3Account:
        """The account of intake's source, CDSE's S3 (DSLAB_S2L1C_CDSE_PROFILE, default cdse)."""
        return self.account(CDSE_PROFILE, DEFAULT_CDSE_PROFILE)

    @property
    def stac_url(self) -> str:
        """The STAC API intake searches (DSLAB_S2L1C_STAC_URL, default CDSE's)."""
        return self.text(STAC_URL, DEFAULT_STAC_URL).rstrip("/")

    @property
    def network(self) -> dict[str, str] | None:
        """The lab's network profiles (``{"s3": "allas: latency_ms=…", "cdse": …}``), recorded
        with every result; None off the lab (a real network)."""
        found = {k: self.settings[v] for k, v in LAB_NETWORK.items() if v in self.settings}
        return found or None

    @property
    def cdse_connections(self) -> int:
        return self.integer(CDSE_CONNECTIONS, DEFAULT_CDSE_CONNECTIONS, minimum=1)
