"""The write protocol of a tile-year's Zarr groups: what is written when, and when a group
counts as complete.

Conversion writes a group's data in blocks (one time chunk × ``block``² pixels, whole chunks
or shards); the group attribute ``dslab_done_blocks`` lists the blocks written, and
``dslab_complete`` is true only when all are. ``dslab_products`` is the commit point of the
time axis: the product ids the arrays hold, written only after ``data``, ``time`` and
``product_id`` agree in length, so a conversion killed at any write leaves either the last
committed state or a group without it (whose creation never finished). Readers refuse a
group unless it is complete and its arrays agree with its committed products.

Every writer of a tile-year is a ``TileYearWriter``: ``FolderWriter`` on a Zarr folder (the
attributes above are its only commit) and ``icechunk_repo.TileYearCommit`` (one commit of the
repository per tile-year, on top of them).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import zarr
from zarr.abc.codec import ArrayBytesCodec

from sentinel2_l1c.cube.layouts import GroupLayout
from sentinel2_l1c.cube.schema import ARRAYS, TIME_ARRAYS, create_group, product_ids
from sentinel2_l1c.s2.bands import BandGroup
from sentinel2_l1c.s2.product import Grid, SafeProduct
from sentinel2_l1c.storage.places import Place

DONE = "dslab_done_blocks"
COMPLETE = "dslab_complete"
PRODUCTS = "dslab_products"


@dataclass(frozen=True)
class Block:
    """A region written by one task: time steps [t0, t1) and pixels [y0, y1) × [x0, x1)."""

    t0: int
    t1: int
    y0: int
    y1: int
    x0: int
    x1: int

    @property
    def key(self) -> str:
        return f"{self.t0}/{self.y0}/{self.x0}"


def blocks(
    times: int, shape: tuple[int, int], layout: GroupLayout, first_time: int = 0
) -> Iterator[Block]:
    """Blocks covering time steps from the time chunk holding ``first_time`` to ``times``."""
    step = layout.time_step
    for t0 in range(first_time - first_time % step, times, step):
        for y0 in range(0, shape[0], layout.block):
            for x0 in range(0, shape[1], layout.block):
                yield Block(
                    t0,
                    min(t0 + step, times),
                    y0,
                    min(y0 + layout.block, shape[0]),
                    x0,
                    min(x0 + layout.block, shape[1]),
                )


def set_times(group: zarr.Group, products: Sequence[SafeProduct]) -> None:
    """Size the time axis to ``products``, (re)write its coordinates, then commit them.

    Callers withdraw completeness first: until ``dslab_products`` is written, a crash leaves
    the previous commit, which the next run repeats this from.
    """
    times = np.array([p.start_time64 for p in products], dtype="datetime64[ms]").astype("int64")
    ids = [p.product_id for p in products]
    for name in ("time", "product_id"):
        group[name].resize((len(products),))
    group["time"][:] = times
    group["product_id"][:] = np.array(ids)
    data = group["data"]
    data.resize((len(products), *data.shape[1:]))
    group.attrs[PRODUCTS] = ids


def arrays_agree(group: zarr.Group, count: int) -> bool:
    """Whether every array with a time axis exists and has ``count`` time steps."""
    return time_lengths_agree(lambda name: group[name].shape[0], count)


def time_lengths_agree(time_length: Callable[[str], int], count: int) -> bool:
    """``arrays_agree`` from a function giving an array's time length (KeyError: missing)."""
    try:
        return all(time_length(name) == count for name in TIME_ARRAYS)
    except KeyError:
        return False


def committed_products(group: zarr.Group) -> list[str] | None:
    """The product ids of the group's last commit; None if its creation never finished.

    A group written before ``dslab_products`` existed is taken at its word when it has every
    array and they agree.
    """
    committed = committed_in(group.attrs)
    if committed is not None:
        return committed
    if DONE not in group.attrs or not all(name in group for name in ARRAYS):
        return None
    legacy = product_ids(group)
    return legacy if arrays_agree(group, len(legacy)) else None


def is_complete(group: zarr.Group) -> bool:
    """All blocks written, and the arrays agree with the committed products."""
    return complete_per_metadata(group.attrs, lambda name: group[name].shape[0])


def complete_per_metadata(attrs: Mapping[str, Any], time_length: Callable[[str], int]) -> bool:
    """``is_complete`` from a group's attributes and its arrays' time lengths (KeyError for a
    missing array), for readers that are not zarr-python."""
    committed = attrs.get(PRODUCTS)
    if not attrs.get(COMPLETE, False) or committed is None:
        return False
    return time_lengths_agree(time_length, len(committed))


# --------------------------------------------------------------------------------------
# Recording progress
# --------------------------------------------------------------------------------------


def new_group(
    root: zarr.Group,
    path: str,
    band_group: BandGroup,
    grid: Grid,
    crs: str,
    layout: GroupLayout,
    serializer: ArrayBytesCodec | None = None,
) -> zarr.Group:
    """A group with empty arrays (``schema.create_group``), no block written, not complete."""
    attributes = {DONE: [], COMPLETE: False}
    return create_group(root, path, band_group, grid, crs, layout, serializer, attributes)


def done_blocks(group: zarr.Group) -> set[str]:
    """The keys of the blocks written since the time axis was last committed."""
    return set(group.attrs.get(DONE, []))


def withdraw(group: zarr.Group, kept_blocks: set[str]) -> None:
    """Before the time axis changes: not complete, and only ``kept_blocks`` count as written."""
    group.attrs.update({DONE: sorted(kept_blocks), COMPLETE: False})


def record_blocks(group: zarr.Group, written: set[str], complete: bool) -> None:
    """The blocks written so far, and whether they are all of the group's."""
    group.attrs.update({DONE: sorted(written), COMPLETE: complete})


def mark_complete(group: zarr.Group) -> None:
    if not group.attrs.get(COMPLETE):
        group.attrs[COMPLETE] = True


def committed_in(attributes: Mapping[str, Any]) -> list[str] | None:
    """The product ids a group's attributes record as committed (None: none recorded)."""
    committed = attributes.get(PRODUCTS)
    return None if committed is None else list(committed)


# --------------------------------------------------------------------------------------
# Writers
# --------------------------------------------------------------------------------------


class TileYearWriter(Protocol):
    """Where a tile-year's groups are written: prepare them in ``root``, write the blocks
    through ``forks(n)`` (one per block task, picklable), ``merge`` what the tasks return,
    record progress in ``root`` again, then ``commit``."""

    @property
    def root(self) -> zarr.Group: ...

    def forks(self, count: int, prepared: str) -> list[Any]:
        """What ``count`` block tasks write through (``prepared`` names the tile-year)."""

    def merge(self, forks: list[Any]) -> None: ...

    def commit(self, message: str, products_added: list[str]) -> str | None:
        """Make the tile-year's state the one readers see; the commit's id, or None."""


class FolderWriter:
    """Zarr groups in a folder or a bucket: block tasks write to the store itself, and the
    progress recorded in the groups' attributes after each batch is the only commit there is."""

    def __init__(self, target: Place, tile_year: str = "") -> None:
        """``tile_year`` (``TILE/YEAR``): the part of the store this writer owns."""
        folder = target.local_path()
        if folder is not None and (folder / tile_year).exists():
            for leftover in (folder / tile_year).rglob("*.partial"):  # LocalStore, killed
                leftover.unlink()
        self.store = target.zarr_writer()
        self.root = zarr.open_group(self.store, mode="a", zarr_format=3)

    def forks(self, count: int, prepared: str) -> list[Any]:
        return [self.store] * count

    def merge(self, forks: list[Any]) -> None:
        pass

    def commit(self, message: str, products_added: list[str]) -> None:
        return None
