"""Errors that end a command with one clear line instead of a traceback.

Library code raises these for *expected* failures (bad configuration, bad input data,
unreachable remote); ``run.cli.run_cli`` turns them into one line on stderr and an exit code.
Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class DslabError(Exception):
    """Base class of the package's expected errors; the message is shown to the user as is."""

    exit_code = 1


class ConfigError(DslabError):
    """A missing or malformed setting (environment variable, command-line value)."""

    exit_code = 2


class InputDataError(DslabError):
    """Input data that cannot be used: corrupt or missing files, wrong names, no products."""


class RemoteError(DslabError):
    """A remote service (STAC API, S3) failed after retries or refused the request."""
