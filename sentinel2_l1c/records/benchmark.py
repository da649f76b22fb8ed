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
    soak.{storage}.{key}.{concurrency}
                               loader mode with --duration: seconds, patches, wrong,
                               retried, start, end, growth (end / start of rss_mb,
                               open_files, sockets), intervals[] (bench.soak)
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
from pathlib import Path
from typing import Any

from sentinel2_l1c.errors import InputDataError
from sentinel2_l1c.records.fields import JsonFields
from sentinel2_l1c.records.result_files import read_json
from sentinel2_l1c.storage.files import atomic_write_text

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
    def _read(fields: JsonFields) -> tuple[list[float], dict[str, float]]:
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
    #: what each load cost a coverage service (``server_cpu_seconds``, ``link_bytes``: a
    #: value per load that knows it); empty for readers of stored files
    served: dict[str, list[float]] = field(default_factory=dict)

    def add_served(self, costs: dict[str, float]) -> None:
        for name, value in costs.items():
            self.served.setdefault(name, []).append(value)

    def served_means(self) -> dict[str, float]:
        return {name: statistics.mean(values) for name, values in self.served.items() if values}

    def to_json(self) -> dict[str, Any]:
        return {
            "durations": self.durations,
            "band_group_shapes": self.band_group_shapes,
            **self.statistics,
            "reader": self.reader,
            "layout": self.layout,
            **({"served": self.served} if self.served else {}),
        }

    @classmethod
    def from_fields(cls, fields: JsonFields) -> Measurement:
        durations, stored = cls._read(fields)
        return cls(
            durations,
            stored,
            fields.get("band_group_shapes", dict, {}),
            fields.get("reader", dict, {}),
            fields.get("layout", (str, type(None)), None),
            fields.get("served", dict, {}),
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
    def from_fields(cls, fields: JsonFields) -> IdealMeasurement:
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
    def from_fields(cls, fields: JsonFields) -> LoaderMeasurement:
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
    soak: dict[str, Any] = field(default_factory=dict)  # as ``bench.soak`` writes it

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
            "soak": self.soak,
            "config": self.config,
            "environment": self.environment,
            "started": self.started,
        }

    @classmethod
    def from_json(cls, data: Any, where: str = "results") -> BenchmarkResults:
        """Results of this tool or the first version; InputDataError naming a wrong field."""
        fields = JsonFields(data, where)
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
            soak=fields.get("soak", dict, {}),
            config=fields.get("config", dict, {}),
            environment=fields.get("environment", dict, {}),
            started=fields.get("started", str, ""),
        )

    def text(self) -> str:
        return json.dumps(self.to_json(), indent=2) + "\n"

    def write(self, target: Path) -> None:
        atomic_write_text(target, self.text())


def _entries(storage: JsonFields) -> dict[str, JsonFields]:
    return {key: JsonFields(value, f"{storage.where}.{key}") for key, value in storage.data.items()}


def _by_concurrency(entries: JsonFields) -> dict[int, LoaderMeasurement]:
    found = {}
    for text, entry in _entries(entries).items():
        if not text.isdigit() or int(text) < 1:
            raise InputDataError(f"{entries.where}.{text}: not a number of patches in flight")
        found[int(text)] = LoaderMeasurement.from_fields(entry)
    return found


def _repeat(data: Any, where: str) -> Repeat:
    fields = JsonFields(data, where)
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
