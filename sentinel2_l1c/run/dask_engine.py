"""Where the converters' Dask tasks run: local threads, a running scheduler, a local cluster
of worker processes, or Slurm jobs started through dask-jobqueue (CSC Puhti).

Every engine gives the same results; the converters run their ``dask.compute`` calls
inside ``DaskEngine.running``. Worker processes and Slurm workers must see the same files
(the network drive); what the tasks return travels back pickled.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from sentinel2_l1c.errors import ConfigError

SCHEDULER_TIMEOUT = "10s"  # distributed retries a refused connection until then
CLUSTERS = ("threads", "local", "slurm")


@dataclass(frozen=True)
class SlurmJob:
    """One Slurm job of Dask workers (``dask_jobqueue.SLURMCluster``); the defaults suit one
    Puhti small-partition job."""

    cores: int = 4
    memory: str = "16GB"
    walltime: str = "01:00:00"
    account: str | None = None  # e.g. project_2001234
    queue: str | None = None  # the partition, e.g. small
    #: extra ``#SBATCH`` directives, e.g. ``--gres=nvme:100``
    job_extra: tuple[str, ...] = ()
    jobs: int = 1  # jobs started (each ``cores`` worker threads in one process)

    def __post_init__(self) -> None:
        if self.cores < 1 or self.jobs < 1:
            raise ConfigError(
                f"Slurm cores and jobs must be at least 1, got {self.cores}, {self.jobs}"
            )

    def cluster_arguments(self) -> dict[str, Any]:
        return {
            "cores": self.cores,
            "processes": 1,
            "memory": self.memory,
            "walltime": self.walltime,
            "account": self.account,
            "queue": self.queue,
            "job_extra_directives": list(self.job_extra),
            # a worker's spill and temporary files on the node's own disk when it has one
            "local_directory": "$LOCAL_SCRATCH"
            if any("nvme" in e for e in self.job_extra)
            else None,
        }

    def cluster(self) -> Any:  # a dask_jobqueue.SLURMCluster
        from dask_jobqueue import SLURMCluster

        return SLURMCluster(**self.cluster_arguments())

    def job_script(self) -> str:
        """The batch script each job runs (shown by ``--show-job-script``; needs no Slurm)."""
        with self.cluster() as cluster:
            return str(cluster.job_script())


@dataclass(frozen=True)
class DaskEngine:
    """How ``dask.compute`` runs: ``cluster`` threads (default), local (``workers`` processes)
    or slurm (``slurm`` jobs), or a running scheduler at ``scheduler``."""

    workers: int | None = None  # threads, or worker processes of a local cluster
    scheduler: str | None = None
    cluster: str = "threads"
    slurm: SlurmJob = field(default_factory=SlurmJob)

    def __post_init__(self) -> None:
        if self.workers is not None and self.workers < 1:
            raise ConfigError(f"--workers must be at least 1, got {self.workers}")
        if self.cluster not in CLUSTERS:
            raise ConfigError(
                f"unknown cluster {self.cluster!r}; choose from {', '.join(CLUSTERS)}"
            )
        if self.scheduler and self.cluster != "threads":
            raise ConfigError("give either --scheduler or --cluster, not both")

    @property
    def parallel(self) -> int:
        """Tasks that run at once (batches are a few times this)."""
        if self.cluster == "slurm":
            return self.slurm.cores * self.slurm.jobs
        return self.workers or os.cpu_count() or 1

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        """Make ``dask.compute`` inside the block run on this engine."""
        import dask

        if self.cluster == "threads" and self.scheduler is None:
            with dask.config.set(scheduler="threads", num_workers=self.parallel):
                yield
            return
        from distributed import Client, LocalCluster

        with contextlib.ExitStack() as stack:
            if self.cluster == "local":
                address: Any = stack.enter_context(
                    LocalCluster(
                        n_workers=self.parallel, threads_per_worker=1, processes=True,
                        dashboard_address=None,
                    )
                )  # fmt: skip
            elif self.cluster == "slurm":
                if shutil.which("sbatch") is None:
                    raise ConfigError("--cluster slurm needs sbatch: run on a Slurm login node")
                address = stack.enter_context(self.slurm.cluster())
                address.scale(jobs=self.slurm.jobs)
            else:
                address = self.scheduler
            try:
                stack.enter_context(Client(address, timeout=SCHEDULER_TIMEOUT))
            except OSError as err:
                raise ConfigError(f"cannot reach the Dask scheduler at {address}: {err}") from None
            yield
