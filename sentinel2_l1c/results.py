"""The results files: one definition of what the tools write and the reports read.

Benchmark results, ``sentinel2_l1c_YYYY-MM-DD_HH-MM-SS.json``, keep the first version's
schema and add what makes a result trustworthy::

    tile, year
    results.{storage}.{key}    durations, band_group_shapes, total_duration, mean_durations,
                               std_durations, stderr_durations (= std / √n), reader,
                               layout (a Zarr store's named layout; null for files)
    ideal.{storage}            durations and statistics, beside (the key it is the floor
                               of), chunks, compressed_bytes, decompressed_bytes (of the
                               last patch), reader
    repeats[]                  repeat, patch, checksums and bytes per "storage/key", cold
    throughput.{storage}.{key}.{concurrency}
                               loader mode (patches in flight): loader (threads|processes),
                               patches, seconds, patches_per_second, latency_p50,
                               latency_p95, latencies, checksum (of every patch's pixels)
    config, environment (with the lab's network profiles), started

``key`` is a format (its default reader) or ``format@reader``. Timed actions (``stage_*.json``,
``publish_*.json``) are ``started``, ``config``, ``environment`` and ``actions[]``. Files of
the first version (``results`` only) read; a file that is not one of these, or has fields of
the wrong type, is an InputDataError naming the field.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .errors import InputDataError
from .utils import atomic_write_text, new_result_file, read_json, run_environment

IDEAL = "ideal"  # the reference measured beside a Zarr format: only its chunks, decompressed


def summary(durations: list[float]) -> dict[str, float]:
    """Total, mean, sample standard deviation and standard error (std / √n)."""
    std = statistics.stdev(durations) if len(durations) > 1 else 0.0
    return {
        "total_duration": sum(durations),
        "mean_durations": statistics.mean(durations),
        "std_durations": std,
        "stderr_durations": std / math.sqrt(len(durations)),
    }


class _Fields:
    """Typed access to one JSON object, with errors that name the field."""

    def __init__(self, data: Any, where: str) -> None:
        if not isinstance(data, dict):
            raise InputDataError(f"{where} is {type(data).__name__}, not an object")
        self.data, self.where = data, where

    def get(self, name: str, kind: type | tuple[type, ...], default: Any = ...) -> Any:
        if name not in self.data:
            if default is ...:
                raise InputDataError(f"{self.where} has no {name}")
            return default
        value = self.data[name]
        if not isinstance(value, kind) or isinstance(value, bool) and bool not in _tuple(kind):
            raise InputDataError(f"{self.where}.{name} is {value!r}, not {_kind_name(kind)}")
        return value

    def number(self, name: str, default: Any = ...) -> float:
        return float(self.get(name, (int, float), default))

    def numbers(self, name: str) -> list[float]:
        values = self.get(name, list)
        for value in values:
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise InputDataError(f"{self.where}.{name} holds {value!r}, not a number")
        return [float(v) for v in values]

    def objects(self, name: str) -> dict[str, _Fields]:
        found = self.get(name, dict, {})
        return {key: _Fields(value, f"{self.where}.{name}.{key}") for key, value in found.items()}


def _tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _kind_name(kind: type | tuple[type, ...]) -> str:
    names = {int: "a number", float: "a number", str: "text", list: "a list", dict: "an object"}
    return " or ".join(dict.fromkeys(names.get(k, k.__name__) for k in _tuple(kind)))


@dataclass
class Timing:
    """Durations of one measured combination and their statistics."""

    durations: list[float] = field(default_factory=list)
    stored: dict[str, float] = field(default_factory=dict, repr=False)  # a file's own statistics

    def add(self, seconds: float) -> None:
        self.durations.append(seconds)
        self.stored = {}

    @property
    def statistics(self) -> dict[str, float]:
        """The file's own statistics where it has them (the first version's files), else
        those of the durations."""
        return {**(summary(self.durations) if self.durations else {}), **self.stored}

    @property
    def mean(self) -> float:
        return self.statistics["mean_durations"]

    @property
    def stderr(self) -> float:
        return self.statistics.get("stderr_durations", 0.0)

    @staticmethod
    def _read(fields: _Fields) -> tuple[list[float], dict[str, float]]:
        durations = fields.numbers("durations") if "durations" in fields.data else []
        names = ("total_duration", "mean_durations", "std_durations", "stderr_durations")
        stored = {name: fields.number(name) for name in names if name in fields.data}
        if not durations and "mean_durations" not in stored:
            raise InputDataError(f"{fields.where} has neither durations nor mean_durations")
        return durations, stored


@dataclass
class Measurement(Timing):
    """Patch loads of one storage × key."""

    band_group_shapes: dict[str, list[int]] = field(default_factory=dict)
    reader: dict[str, str] = field(default_factory=dict)
    layout: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "durations": self.durations,
            "band_group_shapes": self.band_group_shapes,
            **self.statistics,
            "reader": self.reader,
            "layout": self.layout,
        }

    @classmethod
    def from_fields(cls, fields: _Fields) -> Measurement:
        durations, stored = cls._read(fields)
        return cls(
            durations,
            stored,
            fields.get("band_group_shapes", dict, {}),
            fields.get("reader", dict, {}),
            fields.get("layout", (str, type(None)), None),
        )


@dataclass
class IdealMeasurement(Timing):
    """The ideal reference on one storage, with the chunk and byte counts of a patch."""

    beside: str = "zarr"  # the key it is the floor of (files without the field: zarr)
    chunks: int = 0
    compressed_bytes: int = 0
    decompressed_bytes: int = 0
    reader: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "durations": self.durations,
            **self.statistics,
            "beside": self.beside,
            "chunks": self.chunks,
            "compressed_bytes": self.compressed_bytes,
            "decompressed_bytes": self.decompressed_bytes,
            "reader": self.reader,
        }

    @classmethod
    def from_fields(cls, fields: _Fields) -> IdealMeasurement:
        durations, stored = cls._read(fields)
        counts = {
            name: int(fields.number(name, 0))
            for name in ("chunks", "compressed_bytes", "decompressed_bytes")
        }
        beside = fields.get("beside", str, cls.beside)
        return cls(durations, stored, beside, **counts, reader=fields.get("reader", dict, {}))


@dataclass
class Repeat:
    """One timed repeat: its patch, and per "storage/key" the pixels' checksum and bytes."""

    repeat: int
    patch: dict[str, float]
    checksums: dict[str, str] = field(default_factory=dict)
    bytes: dict[str, int] = field(default_factory=dict)
    cold: dict[str, bool | str] | None = None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        if self.cold is None:
            del data["cold"]
        return data


@dataclass
class LoaderMeasurement:
    """A fixed set of patches loaded with ``concurrency`` in flight, as a training data loader
    does: wall time for all, each patch's own load time, and one checksum over all pixels."""

    loader: str
    patches: int
    seconds: float
    latencies: list[float]
    checksum: str

    @property
    def patches_per_second(self) -> float:
        return self.patches / self.seconds

    def percentile(self, share: float) -> float:
        """The ``share`` quantile of the per-patch latencies (linear interpolation)."""
        ordered = sorted(self.latencies)
        position = share * (len(ordered) - 1)
        low = math.floor(position)
        high = min(low + 1, len(ordered) - 1)
        return ordered[low] + (ordered[high] - ordered[low]) * (position - low)

    def to_json(self) -> dict[str, Any]:
        return {
            "loader": self.loader,
            "patches": self.patches,
            "seconds": self.seconds,
            "patches_per_second": self.patches_per_second,
            "latency_p50": self.percentile(0.5),
            "latency_p95": self.percentile(0.95),
            "latencies": self.latencies,
            "checksum": self.checksum,
        }

    @classmethod
    def from_fields(cls, fields: _Fields) -> LoaderMeasurement:
        latencies = fields.numbers("latencies")
        seconds = fields.number("seconds")
        if not latencies or seconds <= 0:
            raise InputDataError(f"{fields.where} has no latencies or no positive seconds")
        return cls(
            fields.get("loader", str),
            int(fields.number("patches")),
            seconds,
            latencies,
            fields.get("checksum", str),
        )


#: Loader-mode measurements by storage, key and patches in flight.
Throughput = dict[str, dict[str, dict[int, LoaderMeasurement]]]


@dataclass
class BenchmarkResults:
    tile: str
    year: int
    results: dict[str, dict[str, Measurement]] = field(default_factory=dict)
    ideal: dict[str, IdealMeasurement] = field(default_factory=dict)
    repeats: list[Repeat] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)
    started: str = ""
    throughput: Throughput = field(default_factory=dict)

    def measurement(self, storage: str, key: str) -> Measurement:
        return self.results.setdefault(storage, {}).setdefault(key, Measurement())

    def means(self) -> dict[str, float]:
        """Mean load time per "storage/key"."""
        return {
            f"{storage}/{key}": entry.mean
            for storage, entries in self.results.items()
            for key, entry in entries.items()
        }

    def rows(self) -> list[tuple[str, str, Timing]]:
        """(storage, key or IDEAL, timing) of every measured combination, fastest first."""
        found: list[tuple[str, str, Timing]] = [
            (storage, key, entry)
            for storage, entries in self.results.items()
            for key, entry in entries.items()
        ]
        found += [(storage, IDEAL, entry) for storage, entry in self.ideal.items()]
        return sorted(found, key=lambda row: row[2].mean)

    def mismatches(self) -> list[str]:
        """Repeats in which some combination returned different pixels."""
        found = []
        for record in self.repeats:
            if len(set(record.checksums.values())) > 1:
                groups: dict[str, list[str]] = {}
                for pair, value in record.checksums.items():
                    groups.setdefault(value, []).append(pair)
                found.append(
                    f"repeat {record.repeat}: " + " vs ".join(", ".join(p) for p in groups.values())
                )
        loaded: dict[str, list[str]] = {}
        for storage, by_key in self.throughput.items():
            for key, by_concurrency in by_key.items():
                for concurrency, entry in by_concurrency.items():
                    loaded.setdefault(entry.checksum, []).append(f"{storage}/{key}×{concurrency}")
        if len(loaded) > 1:
            found.append("loader mode: " + " vs ".join(", ".join(p) for p in loaded.values()))
        return found

    def best_patches_per_second(self) -> dict[str, tuple[float, int]]:
        """Per "storage/key" of the loader mode: the most patches/s and at which concurrency."""
        return {
            f"{storage}/{key}": max(
                (entry.patches_per_second, concurrency)
                for concurrency, entry in by_concurrency.items()
            )
            for storage, by_key in self.throughput.items()
            for key, by_concurrency in by_key.items()
            if by_concurrency
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "tile": self.tile,
            "year": self.year,
            "results": {
                storage: {key: entry.to_json() for key, entry in entries.items()}
                for storage, entries in self.results.items()
            },
            "ideal": {storage: entry.to_json() for storage, entry in self.ideal.items()},
            "repeats": [record.to_json() for record in self.repeats],
            "throughput": {
                storage: {
                    key: {str(c): entry.to_json() for c, entry in by_concurrency.items()}
                    for key, by_concurrency in by_key.items()
                }
                for storage, by_key in self.throughput.items()
            },
            "config": self.config,
            "environment": self.environment,
            "started": self.started,
        }

    @classmethod
    def from_json(cls, data: Any, where: str = "results") -> BenchmarkResults:
        """Results of this tool or the first version; InputDataError naming a wrong field."""
        fields = _Fields(data, where)
        if "results" not in fields.data:
            raise InputDataError(f"{where} is not a benchmark_patch_load results file (no results)")
        results = {
            storage: {
                key: Measurement.from_fields(entry) for key, entry in _entries(by_key).items()
            }
            for storage, by_key in fields.objects("results").items()
        }
        return cls(
            tile=str(fields.get("tile", (str, int), "")),
            year=int(fields.number("year", 0)),
            results=results,
            ideal={s: IdealMeasurement.from_fields(e) for s, e in fields.objects(IDEAL).items()},
            repeats=[_repeat(r, f"{where}.repeats") for r in fields.get("repeats", list, [])],
            throughput={
                storage: {
                    key: _by_concurrency(by_concurrency)
                    for key, by_concurrency in _entries(by_key).items()
                }
                for storage, by_key in fields.objects("throughput").items()
            },
            config=fields.get("config", dict, {}),
            environment=fields.get("environment", dict, {}),
            started=fields.get("started", str, ""),
        )

    def text(self) -> str:
        return json.dumps(self.to_json(), indent=2) + "\n"

    def write(self, target: Path) -> None:
        atomic_write_text(target, self.text())


def _entries(storage: _Fields) -> dict[str, _Fields]:
    return {key: _Fields(value, f"{storage.where}.{key}") for key, value in storage.data.items()}


def _by_concurrency(entries: _Fields) -> dict[int, LoaderMeasurement]:
    found = {}
    for text, entry in _entries(entries).items():
        if not text.isdigit() or int(text) < 1:
            raise InputDataError(f"{entries.where}.{text}: not a number of patches in flight")
        found[int(text)] = LoaderMeasurement.from_fields(entry)
    return found


def _repeat(data: Any, where: str) -> Repeat:
    fields = _Fields(data, where)
    return Repeat(
        repeat=int(fields.number("repeat")),
        patch=fields.get("patch", dict, {}),
        checksums=fields.get("checksums", dict, {}),
        bytes=fields.get("bytes", dict, {}),
        cold=fields.get("cold", dict, None),
    )


def read_benchmark(path: Path) -> BenchmarkResults:
    return BenchmarkResults.from_json(read_json(path), str(path))


# --------------------------------------------------------------------------------------
# Timed actions: stage and publish
# --------------------------------------------------------------------------------------


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
        fields = _Fields(data, where)
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
        fields = _Fields(read_json(path), str(path))
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
