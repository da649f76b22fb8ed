"""Timed actions of ``stage`` and ``publish_s3`` (``stage_*.json``, ``publish_*.json``): each
copy, unzip or publish with its seconds, files and bytes, in a results file rewritten after
every action."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sentinel2_l1c.errors import InputDataError
from sentinel2_l1c.records.fields import JsonFields
from sentinel2_l1c.records.result_files import new_result_file, read_json, run_environment
from sentinel2_l1c.storage.files import atomic_write_text


@dataclass
class Action:
    """One timed action: a copy, unzip or stream-unzip to temp, or a publish to S3."""

    action: str
    source_storage: str | None
    format: str
    source: str
    target: str
    seconds: float
    files: int
    bytes: int
    skipped_files: int
    skipped_bytes: int
    extra: dict[str, Any] = field(default_factory=dict)  # publish: deleted, created_bucket, …

    @property
    def key(self) -> str:
        """``action:source:format``, the key of staging times in throughput estimates."""
        return f"{self.action}:{self.source_storage}:{self.format}"

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        return {**{k: v for k, v in data.items() if k != "extra"}, **self.extra}

    @classmethod
    def from_json(cls, data: Any, where: str) -> Action:
        fields = JsonFields(data, where)
        known = {
            "action": fields.get("action", str),
            "source_storage": fields.get("source_storage", (str, type(None)), None),
            "format": fields.get("format", str),
            "source": fields.get("source", str, ""),
            "target": fields.get("target", str, ""),
            "seconds": fields.number("seconds"),
            "files": int(fields.number("files", 0)),
            "bytes": int(fields.number("bytes", 0)),
            "skipped_files": int(fields.number("skipped_files", 0)),
            "skipped_bytes": int(fields.number("skipped_bytes", 0)),
        }
        extra = {k: v for k, v in fields.data.items() if k not in known}
        return cls(**known, extra=extra)


@dataclass
class ActionLog:
    """A timestamped results file of timed actions, rewritten (atomically) after each one."""

    path: Path
    config: dict[str, Any]
    started: str
    environment: dict[str, Any]
    actions: list[Action] = field(default_factory=list)

    @classmethod
    def start(
        cls,
        folder: Path,
        prefix: str,
        config: dict[str, Any],
        network: dict[str, str] | None = None,
    ) -> ActionLog:
        """A new results file (its own name, even for runs started in the same second)."""
        started = datetime.now(UTC)
        log = cls(Path(), config, started.isoformat(), run_environment(network))
        log.path = new_result_file(folder, prefix, started, log.text())
        return log

    def add(self, action: Action) -> None:
        self.actions.append(action)
        atomic_write_text(self.path, self.text())

    def text(self) -> str:
        return json.dumps(self.to_json(), indent=2) + "\n"

    def to_json(self) -> dict[str, Any]:
        return {
            "started": self.started,
            "config": self.config,
            "environment": self.environment,
            "actions": [action.to_json() for action in self.actions],
        }

    @classmethod
    def read(cls, path: Path) -> ActionLog:
        fields = JsonFields(read_json(path), str(path))
        if "actions" not in fields.data:
            raise InputDataError(f"{path} is not a stage or publish results file (no actions)")
        actions = [
            Action.from_json(item, f"{path}.actions[{number}]")
            for number, item in enumerate(fields.get("actions", list))
        ]
        return cls(
            path,
            fields.get("config", dict, {}),
            fields.get("started", str, ""),
            fields.get("environment", dict, {}),
            actions,
        )
