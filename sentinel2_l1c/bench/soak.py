"""Soak: patches flowing for minutes through one opened loader, as a training job's loader
runs for days, and what the process holds meanwhile.

``concurrency`` threads load patches from a fixed pool in turn until the time is up. Every
interval (a minute) a line gives the patches per second of that interval and the process's
resident memory, open files and sockets (means of samples taken every 0.2 s: with patches in
flight one sample says more about their buffers than about a leak); growth is the mean of
the last fifth of the intervals over the second fifth's (the first fifth warms up: the memory
allocator's arenas fill as every thread has loaded); every load's checksum is compared
with the first load of the same patch (a wrong pixel is counted, never hidden), and a load
that fails after its client's own retries is retried once, logged and counted, before it ends
the run.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import statistics
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from sentinel2_l1c.loaders.base import Loader, Patch, checksum

log = logging.getLogger(__name__)

MINUTE = 60.0
SAMPLE = 0.2  # seconds between usage samples


@dataclass(frozen=True)
class Usage:
    """What the process holds: resident memory (MB), open file descriptors, sockets."""

    rss_mb: float
    open_files: float  # means of samples are fractional
    sockets: float

    @classmethod
    def now(cls) -> Usage:
        rss_kb = 0
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    rss_kb = int(line.split()[1])
        descriptors = os.listdir("/proc/self/fd")
        sockets = 0
        for descriptor in descriptors:
            try:
                sockets += os.readlink(f"/proc/self/fd/{descriptor}").startswith("socket:")
            except OSError:  # closed since the listing
                continue
        return cls(rss_kb / 1024, len(descriptors), sockets)


USAGE = ("rss_mb", "open_files", "sockets")


@dataclass(frozen=True)
class Interval:
    """One reporting interval: when it ended (s since start), patches done, usage."""

    seconds: float
    patches: int
    patches_per_second: float
    usage: Usage


@dataclass
class SoakResult:
    concurrency: int
    seconds: float = 0.0
    patches: int = 0
    wrong: int = 0  # loads whose pixels differ from the first load of the same patch
    retried: int = 0  # loads that failed after the client's retries and were retried once
    intervals: list[Interval] = field(default_factory=list)

    def usage(self, last: bool) -> Usage:
        """The mean usage of the last fifth of the intervals, or of the second (after the
        warm-up); a fifth is at least one interval."""
        count = max(1, len(self.intervals) // 5)
        chosen = self.intervals[-count:] if last else self.intervals[count : 2 * count]
        chosen = chosen or self.intervals[-1:]
        return Usage(*(statistics.mean(getattr(i.usage, n) for i in chosen) for n in USAGE))

    def growth(self) -> dict[str, float]:
        """End over start, per resource (1.0: flat)."""
        start, end = self.usage(last=False), self.usage(last=True)
        return {n: getattr(end, n) / max(getattr(start, n), 1e-9) for n in USAGE}

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        if self.intervals:
            data |= {
                "start": asdict(self.usage(last=False)),
                "end": asdict(self.usage(last=True)),
                "growth": self.growth(),
            }
        return data

    def line(self, interval: Interval) -> str:
        usage = interval.usage
        return (
            f"{interval.seconds / MINUTE:6.1f} min {interval.patches_per_second:7.2f} patches/s "
            f"RSS {usage.rss_mb:7.1f} MB, {usage.open_files:.1f} open files, {usage.sockets:.1f} "
            f"sockets; {self.patches} patches, {self.wrong} wrong, {self.retried} retried"
        )


def soak(
    loader: Loader,
    patches: list[Patch],
    concurrency: int,
    seconds: float,
    interval: float = MINUTE,
    report: Callable[[str], None] = lambda line: None,
) -> SoakResult:
    """Load ``patches`` in turn with ``concurrency`` threads for ``seconds``."""
    result = SoakResult(concurrency)
    first: dict[int, str] = {}
    lock, stop, numbers = threading.Lock(), threading.Event(), itertools.count()

    def load(index: int) -> str:
        try:
            return checksum(loader.load(patches[index]))
        except Exception as err:  # the client gave up: once more, logged
            log.warning("patch %d failed (%s); retrying it once", index, err)
            with lock:
                result.retried += 1
            return checksum(loader.load(patches[index]))

    def work() -> None:
        while not stop.is_set():
            index = next(numbers) % len(patches)
            value = load(index)
            with lock:
                result.patches += 1
                result.wrong += first.setdefault(index, value) != value

    began = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        workers = [pool.submit(work) for _ in range(concurrency)]
        done_before, ended_before = 0, 0.0
        try:
            for number in range(1, math.ceil(seconds / interval) + 1):
                ends, samples = began + min(number * interval, seconds), [Usage.now()]
                while time.perf_counter() < ends and not any(w.done() for w in workers):
                    time.sleep(min(SAMPLE, max(0.0, ends - time.perf_counter())))
                    samples.append(Usage.now())
                if any(w.done() for w in workers):
                    break  # a load failed twice: its error is raised below
                with lock:
                    done = result.patches
                elapsed = time.perf_counter() - began
                rate = (done - done_before) / (elapsed - ended_before)
                usage = Usage(*(statistics.mean(getattr(u, n) for u in samples) for n in USAGE))
                step = Interval(elapsed, done - done_before, rate, usage)
                result.intervals.append(step)
                done_before, ended_before = done, elapsed
                report(result.line(step))
        finally:
            stop.set()
        for worker in workers:
            worker.result()
    result.seconds = time.perf_counter() - began
    return result
