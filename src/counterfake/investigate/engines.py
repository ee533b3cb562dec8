"""Where images are analysed: in this process, or on Dask (a LocalCluster, or a scheduler
given by address) in batches, with results put back in order."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Final

from ..media import Limits
from .images import BankSpec, ImageRecord, analyse_image

__all__ = ["analyse_here", "analyse_on_dask"]

_BATCH: Final = 32


def _batches(items: Sequence[Path], size: int) -> Iterator[list[Path]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def _analyse_batch(
    paths: list[Path], spec: BankSpec | None, limits: Limits | None
) -> list[ImageRecord]:
    return [analyse_image(p, spec, limits) for p in paths]


def analyse_here(
    paths: Sequence[Path],
    spec: BankSpec | None,
    limits: Limits,
    advance: Callable[[int], None],
) -> list[ImageRecord]:
    records = []
    for path in paths:
        records.append(analyse_image(path, spec, limits))
        advance(1)
    return records


def analyse_on_dask(
    paths: Sequence[Path],
    spec: BankSpec | None,
    limits: Limits,
    advance: Callable[[int], None],
    scheduler: str | None,
    workers: int,
) -> list[ImageRecord]:
    """Analyse on Dask: a LocalCluster of `workers` processes, or the scheduler at `scheduler`
    (its workers must see the archive at the same path, and the database)."""
    from distributed import Client, LocalCluster, as_completed

    cluster = None
    if scheduler:
        client = Client(scheduler)
    else:
        cluster = LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
        )
        client = Client(cluster)
    try:
        batches = list(_batches(paths, _BATCH))
        futures = client.map(_analyse_batch, batches, spec=spec, limits=limits, pure=False)
        position = {f.key: n for n, f in enumerate(futures)}
        results: list[list[ImageRecord] | None] = [None] * len(batches)
        for future in as_completed(futures):
            results[position[future.key]] = future.result()
            advance(len(batches[position[future.key]]))
        return [record for batch in results for record in batch or []]
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
