"""The benchmark's parameters, and the patches and order they plan.

``BenchmarkConfig`` is what a run is asked to do, as written into its results and read back
by reports; its storage names and ``format@reader`` keys are parsed once into ``Pair``
objects, which the run passes along. For a seed and repeat the patch and the shuffled order of
pairs are always the same.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, replace
from functools import cached_property
from typing import Any

from sentinel2_l1c import formats
from sentinel2_l1c.bench.loader_mode import LOADERS
from sentinel2_l1c.errors import ConfigError
from sentinel2_l1c.formats import Variant
from sentinel2_l1c.loaders.base import GRID, Patch
from sentinel2_l1c.records.benchmark import IDEAL
from sentinel2_l1c.storage import storages
from sentinel2_l1c.storage.storages import Storage


@dataclass(frozen=True)
class Pair:
    """One storage × results key a run times (for the ideal reference: the variant whose
    store it fetches through)."""

    storage: Storage
    variant: Variant
    ideal: bool = False

    @property
    def key(self) -> str:
        """Its key in results: the variant's, or ``ideal``."""
        return IDEAL if self.ideal else self.variant.key

    @property
    def name(self) -> str:
        """``storage/key``, as repeats record checksums."""
        return f"{self.storage.name}/{self.key}"

    @classmethod
    def parse(cls, storage: str, key: str, ideal: bool = False) -> Pair:
        """The pair of a storage name and a results key (the ideal: the key it reads through);
        ConfigError naming the choices for unknown ones."""
        return cls(storages.get(storage), formats.variant(key), ideal)

    def __reduce__(self) -> tuple[Any, ...]:
        """Sent to loader processes by its names, and parsed there against the registries."""
        return Pair.parse, (self.storage.name, self.variant.key, self.ideal)


def paired(storage: storages.Storage, variant: Variant) -> bool:
    """Whether a storage × key is benchmarked: the storage holds the format, and a storage that
    cuts patches on a server is read only by readers that ask one (and they read nothing else)."""
    return storage.holds(variant.fmt) and storage.cuts_patches == variant.reader.asks_service


@dataclass(frozen=True)
class BenchmarkConfig:
    """The run's parameters; written into the results and read back by reports."""

    storages: tuple[str, ...]
    formats: tuple[str, ...]  # results keys: formats and format@reader variants
    num_repeats: int
    tile: str
    year: int
    bounds: tuple[float, float, float, float]  # x1 (left), y1 (top), x2 (right), y2 (bottom)
    seed: int = 0
    patch_size: int = 5100
    workers: int = 8
    cold: bool = False
    concurrency: tuple[int, ...] = ()  # loader mode: patches in flight (none: not run)
    loader: str = "threads"  # loader mode: threads sharing a loader, or processes
    patches: int = 16  # loader mode: patches per storage × key and concurrency
    loader_formats: tuple[str, ...] | None = None  # loader mode: these keys (None: all)
    duration: float = 0.0  # loader mode as a soak: minutes per pair and concurrency (0: not)
    skip: tuple[str, ...] = ()  # ``storage/key`` pairs left out of the run

    def __post_init__(self) -> None:
        self.chosen_storages  # noqa: B018 (parsed now: a bad name fails here, in one line)
        self.variants  # noqa: B018
        for name in self.skip:
            storage, _, key = name.partition("/")
            Pair.parse(storage, key)  # a bad storage or key fails here, in one line
        if self.num_repeats < 2:
            raise ConfigError(
                f"num_repeats must be at least 2 (for a standard error), got {self.num_repeats}"
            )
        if self.patch_size <= 0 or self.patch_size % GRID:
            raise ConfigError(
                f"patch_size must be a positive multiple of {GRID} m, got {self.patch_size}"
            )
        if self.workers < 1:
            raise ConfigError(f"workers must be at least 1, got {self.workers}")
        if any(c < 1 for c in self.concurrency) or self.patches < 1:
            raise ConfigError("concurrency values and patches must be at least 1")
        if not set(self.loader_formats or ()) <= set(self.formats):
            raise ConfigError("loader-mode formats must be among the benchmarked formats")
        if self.loader not in LOADERS:
            raise ConfigError(f"loader must be one of {', '.join(LOADERS)}, got {self.loader!r}")
        if self.duration < 0 or (self.duration and not self.concurrency):
            raise ConfigError("--duration needs a positive number of minutes and --concurrency")
        if self.duration and self.loader != "threads":
            raise ConfigError("--duration soaks threads sharing one loader: use --loader threads")
        x1, y1, x2, y2 = self.bounds
        if x2 - x1 < self.patch_size or y1 - y2 < self.patch_size:
            raise ConfigError(
                f"a {self.patch_size} m patch does not fit in the bounds {self.bounds} (x1 y1 x2 y2)"
            )

    @cached_property
    def chosen_storages(self) -> tuple[Storage, ...]:
        return tuple(storages.get(name) for name in self.storages)

    @cached_property
    def variants(self) -> tuple[Variant, ...]:
        return tuple(formats.variant(key) for key in self.formats)

    @property
    def ideal_beside(self) -> Variant | None:
        """The variant the ideal reference is timed beside (a format with an ideal, read with
        its default reader)."""
        return next((v for v in self.variants if v.fmt.ideal_reader and v.key == v.fmt.name), None)

    def pairs(self) -> list[Pair]:
        """Storage × key pairs of the run: each storage with the formats it can hold."""
        return [
            Pair(storage, variant)
            for storage in self.chosen_storages
            for variant in self.variants
            if paired(storage, variant) and f"{storage.name}/{variant.key}" not in self.skip
        ]

    def ideal_pairs(self) -> list[Pair]:
        """The ideal reference on each storage holding its format, fetched through the
        format's fastest client (its ``ideal_reader``)."""
        beside = self.ideal_beside
        if beside is None:
            return []
        fmt = beside.fmt
        through = Variant(fmt, fmt.reader(fmt.ideal_reader or ""))
        return [
            Pair(s, through, ideal=True)
            for s in self.chosen_storages
            if s.holds(fmt) and not s.cuts_patches
        ]

    def to_json(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BenchmarkConfig:
        """A config written by this tool; the first version's ``async_zipfs`` names the reader
        its zipped Zarr was read with (``zipzarr@async_zipfs``, ``zipzarr@zipstore``)."""
        values = dict(data)
        for name in ("storages", "formats", "bounds", "concurrency", "loader_formats", "skip"):
            if values.get(name) is not None:
                values[name] = tuple(values[name])
        values["formats"] = with_zip_reader(values["formats"], values.pop("async_zipfs", None))
        return cls(**values)


def with_zip_reader(keys: tuple[str, ...], async_zipfs: bool | None) -> tuple[str, ...]:
    """The first version's ``--async_zipfs true|false``: zipped Zarr read through async_zipfs
    or through ZipStore; None (not given): through the zipped Zarr's default reader."""
    if async_zipfs is None:
        return keys
    reader = formats.ZIPZARR.reader("async_zipfs" if async_zipfs else "zipstore")
    chosen = formats.ZIPZARR.key(reader)
    return tuple(chosen if key == formats.ZIPZARR.name else key for key in keys)


def plan_patch(config: BenchmarkConfig, repeat: int) -> Patch:
    """The patch of ``repeat`` (-1: warm-up): the same for the same seed, aligned to 60 m."""
    rng = random.Random(f"{config.seed}/{repeat}/patch")
    x1, y1, x2, y2 = config.bounds
    columns = int((x2 - x1 - config.patch_size) // GRID)
    rows = int((y1 - y2 - config.patch_size) // GRID)
    return Patch(
        x1 + rng.randint(0, columns) * GRID, y1 - rng.randint(0, rows) * GRID, config.patch_size
    )


#: The warm-up patch's side (m): it pays what a first load pays once (imports, connections,
#: metadata, thread pools), not a patch's reads, so it need not be a full patch
WARM_UP_SIZE = 600


def warm_up_patch(config: BenchmarkConfig) -> Patch:
    return plan_patch(replace(config, patch_size=min(WARM_UP_SIZE, config.patch_size)), -1)


def loader_patches(config: BenchmarkConfig) -> list[Patch]:
    """The loader mode's patches: the same for every pair and concurrency (not the repeats')."""
    return [plan_patch(config, 100_000 + number) for number in range(config.patches)]


def plan_order(config: BenchmarkConfig, repeat: int) -> list[Pair]:
    """Storage × key pairs (and the ideal reference on each storage), shuffled."""
    pairs = config.pairs() + config.ideal_pairs()
    random.Random(f"{config.seed}/{repeat}/order").shuffle(pairs)
    return pairs
