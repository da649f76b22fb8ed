"""What a datacube of tiles × years costs on object storage, and whether it fits the quotas.

For a tile set (names, a file of names, or ``finland``: the 77 tiles of Finland and its
Baltic Sea areas), years and formats × layouts, ``plan`` gives the bytes and objects, the
buckets an organisation needs (``tile``: one bucket per tile over all years, as the first
version proposed; ``year``: one per year; ``single``: one bucket), the objects of the fullest
bucket after all years, the minutes to stage a tile-year at a stated bandwidth, and one
verdict line per quota (Allas's defaults: 10 TiB, 1000 buckets, 500 000 objects per bucket).

A tile-year's bytes come from the user's own store when it holds tile-years of that format
(``--measured STORE``: its bytes per stored pixel-date, and the tile-years it holds exactly as
counted), else from the calibrated lab: uint16 pixels at the codec's compression ratio on real
Sentinel-2 pixels (``REAL_RATIOS``, measured on ``../shared/calibration`` by
``lab.calibration``). Objects are the layout's arithmetic (``cube.layouts``), which the tests
check against the stores ``ingest`` writes. Pure arithmetic apart from ``measure``.

    python -m sentinel2_l1c.plan --tiles finland --years 2016-2025 --formats zarr_sharded
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from sentinel2_l1c import formats
from sentinel2_l1c.cube import layouts as zarr_layouts
from sentinel2_l1c.cube.layouts import FULL_TILE, FULL_YEAR_DATES, ZarrLayout
from sentinel2_l1c.errors import ConfigError
from sentinel2_l1c.formats import zarr_stac
from sentinel2_l1c.formats.zarr import ZarrFormat
from sentinel2_l1c.records.result_files import new_result_file
from sentinel2_l1c.run.cli import add_results_folder, new_parser, run_cli
from sentinel2_l1c.s2.bands import BAND_GROUPS, parse_tile_id
from sentinel2_l1c.storage import storages
from sentinel2_l1c.storage.locations import Locations
from sentinel2_l1c.storage.places import Place

#: Finland and its Baltic Sea areas, as the first version listed them
FINLAND = tuple(
    "34VCM 34VCN 34VCP 34VDL 34VDM 34VDN 34VDP 34VDQ 34VDR 34VEL 34VEM 34VEN 34VEP 34VEQ 34VER "
    "34VFL 34VFM 34VFN 34VFP 34VFQ 34VFR 34WDB 34WEA 34WEB 34WES 34WET 34WEV 34WFA 34WFB 34WFC "
    "34WFS 34WFT 34WFU 34WFV 35VLG 35VLH 35VLJ 35VLK 35VLL 35VMG 35VMH 35VMJ 35VMK 35VML 35VNG "
    "35VNH 35VNJ 35VNK 35VNL 35VPH 35VPJ 35VPK 35VPL 35WMM 35WMN 35WMP 35WMQ 35WMR 35WMS 35WMT "
    "35WNM 35WNN 35WNP 35WNQ 35WNR 35WNS 35WNT 35WPM 35WPN 35WPP 35WPQ 35WPR 36VUP 36VUQ 36VUR "
    "36VVQ 36VVR".split()
)
#: Compression ratios of real Sentinel-2 10/20 m pixels in 128 px chunks (``lab.calibration``
#: on ``../shared/calibration``, the lab within ±10 % of them), by codec family and name
REAL_RATIOS = {"zstd5": 1.60, "lz4": 1.50, "pcodec": 1.92, "images": 2.0, "blosc": 1.60}
#: Allas → node NVMe, the first version's copies of a Zarr tile-year (192 GiB in 27 min)
DEFAULT_STAGING_MBPS = 120.0
ORGANISATIONS = ("tile", "year", "single")
TIB = 2**40
#: icechunk's objects per commit besides chunks: snapshot, transaction log, manifests
ICECHUNK_OBJECTS_PER_COMMIT = 3 + len(BAND_GROUPS) * 3


@dataclass(frozen=True)
class Quotas:
    tib: float = 10.0
    buckets: int = 1000
    objects_per_bucket: int = 500_000

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> Quotas:
        """Allas's defaults, overridden by ``DSLAB_QUOTA_TIB``, ``DSLAB_MAX_BUCKETS`` and
        ``DSLAB_MAX_OBJECTS_PER_BUCKET``."""
        values: dict[str, float | int] = {}
        for name, variable, kind in (
            ("tib", "DSLAB_QUOTA_TIB", float),
            ("buckets", "DSLAB_MAX_BUCKETS", int),
            ("objects_per_bucket", "DSLAB_MAX_OBJECTS_PER_BUCKET", int),
        ):
            text = environ.get(variable, "")
            if text:
                try:
                    values[name] = kind(text)
                except ValueError:
                    raise ConfigError(f"{variable} must be a number, got {text!r}") from None
        return cls(**values)  # type: ignore[arg-type]


@dataclass(frozen=True)
class TileYearCost:
    """What one tile-year of a format × layout stores."""

    bytes: float
    objects: int


@dataclass(frozen=True)
class Rate:
    """Bytes per stored pixel-date, and where the number comes from."""

    bytes_per_pixel: float
    source: str


@dataclass(frozen=True)
class Cube:
    """What is planned: tiles × years of one format and layout, each tile-year ``dates`` dates
    of ``side`` px at 10 m (full size by default)."""

    tiles: tuple[str, ...]
    years: tuple[int, ...]
    fmt: ZarrFormat
    layout: ZarrLayout
    dates: int = FULL_YEAR_DATES
    side: int = FULL_TILE[10]

    @property
    def sides(self) -> dict[int, int]:
        return {resolution: self.side * 10 // resolution for resolution in FULL_TILE}

    @property
    def pixel_dates(self) -> int:
        """Stored pixels of a tile-year (every band, every date)."""
        return sum(
            self.dates * len(group.bands) * self.sides[group.resolution] ** 2
            for group in BAND_GROUPS
        )

    def cost(self, rate: Rate) -> TileYearCost:
        objects = zarr_layouts.objects_per_tile_year(
            self.layout, self.fmt.sharded, self.dates, self.sides
        )
        if self.fmt.transactional:  # no coordinate objects of their own; one commit a run
            objects += ICECHUNK_OBJECTS_PER_COMMIT - zarr_layouts.OBJECTS_PER_TILE_YEAR
        return TileYearCost(rate.bytes_per_pixel * self.pixel_dates, objects)


def calibrated_rate(layout: ZarrLayout) -> Rate:
    codec = layout.codec
    ratio = REAL_RATIOS.get(codec.name) or REAL_RATIOS["images" if codec.images else "blosc"]
    return Rate(2 / ratio, f"real pixels' ratio {ratio:.2f} for {codec.name} (lab calibration)")


_TILE_YEAR = re.compile(r"^(?P<tile>\d\d[A-Z]{3})/(?P<year>\d{4})/")
_ITEM = re.compile(rf"^{zarr_stac.ITEMS}/(?P<tile>\d\d[A-Z]{{3}})-(?P<year>\d{{4}})-")  # a group's


def measure(place: Place) -> dict[tuple[str, int], TileYearCost]:
    """Bytes and objects per tile-year as a Zarr folder or bucket holds them (keys
    ``TILE/YEAR/…``, and the STAC Items of its groups); the tile and root group metadata and
    the store's STAC Collection are counted with the first tile-year."""
    found: dict[tuple[str, int], list[int]] = defaultdict(lambda: [0, 0])
    extra: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for name, size in place.files().items():
        match = _TILE_YEAR.match(name) or _ITEM.match(name)
        if match:
            counted = found[(match["tile"], int(match["year"]))]
        else:  # TILE/zarr.json, zarr.json, collection.json: a tile's group and the root
            counted = extra[name.split("/")[0] if "/" in name else ""]
        counted[0] += size
        counted[1] += 1
    costs = {}
    for (tile, year), (size, objects) in found.items():
        costs[(tile, year)] = TileYearCost(size, objects)
    for tile, (size, objects) in extra.items():  # shared metadata: to the first tile-year
        first = min((key for key in costs if not tile or key[0] == tile), default=None)
        if first is not None:
            cost = costs[first]
            costs[first] = TileYearCost(cost.bytes + size, cost.objects + objects)
    return costs


@dataclass
class Plan:
    cube: Cube
    organisation: str
    quotas: Quotas
    staging_mbps: float
    rate: Rate
    per_tile_year: dict[tuple[str, int], TileYearCost] = field(default_factory=dict)

    @property
    def total_bytes(self) -> float:
        return sum(cost.bytes for cost in self.per_tile_year.values())

    @property
    def objects(self) -> int:
        return sum(cost.objects for cost in self.per_tile_year.values())

    def buckets(self) -> dict[str, TileYearCost]:
        """Bucket name → bytes and objects after all years."""
        totals: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
        for (tile, year), cost in self.per_tile_year.items():
            key = {"tile": tile, "year": str(year), "single": "all"}[self.organisation]
            totals[key][0] += cost.bytes
            totals[key][1] += cost.objects
        return {name: TileYearCost(b, int(o)) for name, (b, o) in totals.items()}

    def staging_minutes(self) -> float:
        """Minutes to copy one tile-year (the mean) at the staging bandwidth."""
        mean = self.total_bytes / max(1, len(self.per_tile_year))
        return mean / (self.staging_mbps * 1e6) / 60

    def verdicts(self) -> list[tuple[str, bool, str]]:
        """(quota, fits, one line) for each quota."""
        buckets = self.buckets()
        tib = self.total_bytes / TIB
        fullest = max(buckets.values(), key=lambda cost: cost.objects)
        quotas = self.quotas
        lines = []
        for quota, need, limit, unit in (
            ("tib", tib, quotas.tib, "TiB"),
            ("buckets", len(buckets), quotas.buckets, "buckets"),
            ("objects_per_bucket", fullest.objects, quotas.objects_per_bucket, "objects in the fullest bucket"),
        ):  # fmt: skip
            fits = need <= limit
            need_text = f"{need:,.1f}" if isinstance(need, float) else f"{need:,}"
            limit_text = f"{limit:,g}" if isinstance(limit, float) else f"{limit:,}"
            text = f"{quota}: {need_text} {unit} of {limit_text}: " + (
                "fits" if fits else f"exceeds it by {_overrun(need, limit)}: raise it"
            )
            lines.append((quota, fits, text))
        return lines

    def exceeded(self) -> list[str]:
        return [text for _, fits, text in self.verdicts() if not fits]

    def lines(self) -> list[str]:
        cube, buckets, count = self.cube, self.buckets(), len(self.per_tile_year)
        fullest = max(buckets.values(), key=lambda cost: cost.objects)
        years = f"{min(cube.years)}–{max(cube.years)}" if len(cube.years) > 1 else cube.years[0]
        head = (
            f"{cube.fmt.name}:{cube.layout.name}, {len(cube.tiles)} tiles × {len(cube.years)} "
            f"years ({years}), {cube.dates} dates of {cube.side} px a tile-year"
        )
        return [
            head,
            f"  bytes per pixel-date: {self.rate.bytes_per_pixel:.3f} ({self.rate.source})",
            f"  total {self.total_bytes / TIB:,.2f} TiB; per tile-year "
            f"{self.total_bytes / count / 2**30:,.1f} GiB, {self.objects / count:,.0f} objects",
            f"  {len(buckets)} buckets (one per {self.organisation}); fullest "
            f"{max(b.bytes for b in buckets.values()) / TIB:,.2f} TiB, {fullest.objects:,} objects",
            f"  staging a tile-year at {self.staging_mbps:g} MB/s: {self.staging_minutes():.1f} min",
            *(f"  {text}" for _, _, text in self.verdicts()),
        ]

    def record(self) -> dict:
        buckets = self.buckets()
        return {
            "format": self.cube.fmt.name,
            "layout": self.cube.layout.name,
            "tiles": list(self.cube.tiles),
            "years": list(self.cube.years),
            "dates_per_tile_year": self.cube.dates,
            "tile_side_px": self.cube.side,
            "organisation": self.organisation,
            "bytes_per_pixel": self.rate.bytes_per_pixel,
            "rate_source": self.rate.source,
            "total_bytes": self.total_bytes,
            "total_tib": self.total_bytes / TIB,
            "objects": self.objects,
            "buckets": {name: asdict(cost) for name, cost in sorted(buckets.items())},
            "staging_minutes_per_tile_year": self.staging_minutes(),
            "staging_mbps": self.staging_mbps,
            "quotas": asdict(self.quotas),
            "verdicts": {
                quota: {"fits": fits, "line": text} for quota, fits, text in self.verdicts()
            },
        }


def _overrun(need: float, limit: float) -> str:
    if limit <= 0:
        return f"{need:,.1f}"
    over = need - limit
    amount = f"{over:,.1f}" if isinstance(over, float) else f"{over:,}"
    return f"{amount} ({need / limit:.1f}× the quota)"


def make_plan(
    cube: Cube,
    organisation: str = "tile",
    quotas: Quotas = Quotas(),
    staging_mbps: float = DEFAULT_STAGING_MBPS,
    measured: Mapping[tuple[str, int], TileYearCost] | None = None,
    measured_pixels: Mapping[tuple[str, int], int] | None = None,
    where: str = "",
) -> Plan:
    """The plan of ``cube``: tile-years the store ``where`` holds (``measured``, with their
    stored pixel-dates ``measured_pixels``) as counted, the others from its bytes per
    pixel-date (or the calibrated one) and the layout's objects."""
    if organisation not in ORGANISATIONS:
        raise ConfigError(f"organisation must be one of {', '.join(ORGANISATIONS)}")
    measured, measured_pixels = measured or {}, measured_pixels or {}
    rate = calibrated_rate(cube.layout)
    if measured and measured_pixels:
        pixels = sum(measured_pixels.values())
        size = sum(measured[key].bytes for key in measured_pixels)
        rate = Rate(size / pixels, f"measured on {where}, {len(measured_pixels)} tile-years")
    plan = Plan(cube, organisation, quotas, staging_mbps, rate)
    estimate = cube.cost(rate)
    for tile in cube.tiles:
        for year in cube.years:
            plan.per_tile_year[(tile, year)] = measured.get((tile, year), estimate)
    return plan


def stored_pixels(place: Place, keys: Sequence[tuple[str, int]]) -> dict[tuple[str, int], int]:
    """Pixel-dates each tile-year's groups hold (their ``data`` shapes)."""
    import zarr

    root = zarr.open_group(place.zarr_writer(), mode="r", zarr_format=3)  # through obstore
    found = {}
    for tile, year in keys:
        total = 0
        for group in BAND_GROUPS:
            path = f"{tile}/{year}/{group.name}/data"
            if path in root:
                total += math.prod(root[path].shape)
        found[(tile, year)] = total
    return found


def chart(plans: Sequence[Plan], target: Path) -> None:
    """Bars of TiB and of the fullest bucket's objects per format × layout, against quotas."""
    from sentinel2_l1c.report import _pyplot, _save

    plt = _pyplot()
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 1.2 + 0.5 * len(plans)))
    labels = [f"{p.cube.fmt.name}:{p.cube.layout.name}" for p in plans]
    left.barh(labels, [p.total_bytes / TIB for p in plans], color="#4477aa")
    left.axvline(plans[0].quotas.tib, color="#cc3311", linestyle="--", label="quota")
    left.set_xlabel("TiB in total")
    left.legend()
    objects = [max(b.objects for b in p.buckets().values()) for p in plans]
    right.barh(labels, objects, color="#228833")
    right.axvline(plans[0].quotas.objects_per_bucket, color="#cc3311", linestyle="--")
    right.set_xlabel(f"objects in the fullest bucket (one per {plans[0].organisation})")
    right.set_yticks([])
    figure.suptitle(f"{len(plans[0].cube.tiles)} tiles × {len(plans[0].cube.years)} years")
    figure.tight_layout()
    _save(figure, target)
    plt.close(figure)


# --------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------


def parse_tiles(values: Sequence[str]) -> tuple[str, ...]:
    """Tile ids, ``finland``, or files of ids (whitespace separated)."""
    tiles: list[str] = []
    for value in values:
        if value.lower() == "finland":
            tiles += FINLAND
        elif Path(value).is_file():
            tiles += Path(value).read_text().split()
        else:
            tiles.append(value)
    return tuple(dict.fromkeys(parse_tile_id(tile) for tile in tiles))


def add_tiles_argument(parser: argparse.ArgumentParser, default: list[str] | None) -> None:
    """``--tiles``, read by ``parse_tiles`` (also ``ingest``'s)."""
    parser.add_argument(
        "--tiles", "--tile", nargs="+", default=default, metavar="TILE",
        help=f"Tile ids, files of tile ids, or finland (its {len(FINLAND)} tiles).",
    )  # fmt: skip


def parse_years(values: Sequence[str]) -> tuple[int, ...]:
    """Years, or ranges ``2016-2025`` (both included)."""
    years: list[int] = []
    for value in values:
        first, _, last = value.partition("-")
        try:
            years += range(int(first), int(last or first) + 1)
        except ValueError:
            raise ConfigError(f"a year or a range YYYY-YYYY, got {value!r}") from None
    if not years:
        raise ConfigError("no years")
    return tuple(dict.fromkeys(years))


def plan_formats(text: Sequence[str]) -> list[tuple[ZarrFormat, ZarrLayout]]:
    """``FORMAT`` or ``FORMAT:LAYOUT`` → the format and layout (default: its own)."""
    found = []
    for item in text:
        name, _, layout = item.partition(":")
        fmt = formats.get(name)
        if not isinstance(fmt, ZarrFormat):
            zarr_names = [f for f, v in formats.FORMATS.items() if isinstance(v, ZarrFormat)]
            raise ConfigError(f"plan covers the Zarr formats ({', '.join(zarr_names)}), not {name}")
        found.append((fmt, zarr_layouts.get(layout or fmt.layout)))
    return found


def add_quota_arguments(parser: argparse.ArgumentParser) -> None:
    """The quotas a plan is checked against (also ``ingest``'s)."""
    parser.add_argument(
        "--quota-tib", type=float, default=None,
        help="Storage quota in TiB (default: $DSLAB_QUOTA_TIB, else Allas's 10).",
    )  # fmt: skip
    parser.add_argument(
        "--max-buckets", type=int, default=None,
        help="Buckets allowed (default: $DSLAB_MAX_BUCKETS, else Allas's 1000).",
    )  # fmt: skip
    parser.add_argument(
        "--max-objects-per-bucket", type=int, default=None,
        help="Objects allowed in a bucket (default: $DSLAB_MAX_OBJECTS_PER_BUCKET, else "
        "Allas's 500000).",
    )  # fmt: skip
    parser.add_argument(
        "--organisation", choices=ORGANISATIONS, default="tile",
        help="How the cube is split into buckets: one per tile over all years, one per year, "
        "or one bucket.",
    )  # fmt: skip


def quotas_from(args: argparse.Namespace, environ: Mapping[str, str]) -> Quotas:
    base = Quotas.from_environment(environ)
    return Quotas(
        args.quota_tib if args.quota_tib is not None else base.tib,
        args.max_buckets if args.max_buckets is not None else base.buckets,
        args.max_objects_per_bucket
        if args.max_objects_per_bucket is not None
        else base.objects_per_bucket,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser(
        "Plan a datacube on object storage: TiB, buckets, objects per bucket and staging "
        "minutes for tiles × years × formats, and a verdict per quota.",
        prog="python -m sentinel2_l1c.plan",
    )
    add_tiles_argument(parser, ["finland"])
    parser.add_argument(
        "--years", nargs="+", default=["2016-2025"], metavar="YEAR",
        help="Years or ranges (2016-2025).",
    )  # fmt: skip
    parser.add_argument(
        "--formats", nargs="+", default=[formats.ZARR_SHARDED.name], metavar="FORMAT[:LAYOUT]",
        help="Zarr formats, each with a layout (default: the format's own).",
    )  # fmt: skip
    parser.add_argument(
        "--dates", type=int, default=FULL_YEAR_DATES,
        help="Dates a tile-year (a busy full year at 60° N).",
    )  # fmt: skip
    parser.add_argument(
        "--tile-side", type=int, default=FULL_TILE[10],
        help="Tile side at 10 m in pixels (10980: full size).",
    )  # fmt: skip
    parser.add_argument(
        "--measured", default=None, metavar="STORE",
        help="A Zarr folder or s3://BUCKET of the first format already written: tile-years it "
        "holds are counted, the others scaled from its bytes per pixel-date.",
    )  # fmt: skip
    parser.add_argument(
        "--staging-mbps", type=float, default=DEFAULT_STAGING_MBPS,
        help="Bandwidth of staging copies (Allas → NVMe, the first version's).",
    )  # fmt: skip
    add_quota_arguments(parser)
    add_results_folder(parser)
    parser.add_argument("--chart", type=Path, default=None, help="Write a PNG chart here.")
    return parser


def _run(args: argparse.Namespace) -> int:
    tiles, years = parse_tiles(args.tiles), parse_years(args.years)
    quotas = quotas_from(args, os.environ)
    if args.dates < 1 or args.tile_side < 6 or args.tile_side % 6:
        raise ConfigError("--dates must be at least 1 and --tile-side a positive multiple of 6")
    plans = []
    for number, (fmt, layout) in enumerate(plan_formats(args.formats)):
        cube = Cube(tiles, years, fmt, layout, args.dates, args.tile_side)
        measured, pixels, where = {}, {}, ""
        if args.measured and number == 0:
            place = storages.place_at(args.measured, Locations.from_environment())
            measured = measure(place)
            pixels = stored_pixels(place, sorted(measured))
            where = str(place)
        plans.append(
            make_plan(cube, args.organisation, quotas, args.staging_mbps, measured, pixels, where)
        )
    for plan in plans:
        for line in plan.lines():
            print(line)
    folder = args.output or Locations.from_environment().results_folder()
    text = json.dumps({"plans": [plan.record() for plan in plans]}, indent=2)
    print(f"written {new_result_file(folder, 'plan', datetime.now(UTC), text)}")
    if args.chart:
        chart(plans, args.chart)
        print(f"written {args.chart}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_cli(build_parser(), argv, _run)


if __name__ == "__main__":
    raise SystemExit(main())
