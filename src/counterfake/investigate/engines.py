"""Where an investigation's work runs: in this process, or as Dask tasks (on a LocalCluster,
or on the workers of a scheduler given by address). Both run the same functions on the same
inputs and hand results back in order, so both give the same clusters."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Final, Generic, Protocol, TypeVar, overload

import numpy as np

from ..media import Limits
from .images import BankSpec, ImageRecord, analyse_image, signature_around

__all__ = [
    "Calls",
    "Runner",
    "analyse",
    "dask_runner",
    "in_order",
    "run_here",
    "signatures_around",
]

_BATCH: Final = 32
#: Calls submitted to Dask per worker thread and not yet finished, at most: a task's
#: arguments (thumbnails, keypoint rows) are held here and by the scheduler until it runs.
_IN_FLIGHT: Final = 3

T = TypeVar("T")


class Calls(Sequence[tuple[Any, ...]], Generic[T]):
    """Calls whose arguments are made only when the call is submitted: `make(item)` for each
    item. Made all at once, the link verifications' thumbnails were held twice (here and by
    Dask's scheduler) until they ran: 600 MB at 25,000 images."""

    def __init__(self, items: Sequence[T], make: Callable[[T], tuple[Any, ...]]) -> None:
        self._items = items
        self._make = make

    def __len__(self) -> int:
        return len(self._items)

    @overload
    def __getitem__(self, n: int) -> tuple[Any, ...]: ...
    @overload
    def __getitem__(self, n: slice) -> list[tuple[Any, ...]]: ...
    def __getitem__(self, n: int | slice) -> tuple[Any, ...] | list[tuple[Any, ...]]:
        if isinstance(n, slice):
            return [self._make(item) for item in self._items[n]]
        return self._make(self._items[n])


class Runner(Protocol):
    """Calls `function(*args)` for each args in `calls`, and `done(n, result)` as call n
    finishes (in any order: the caller puts results in place)."""

    def __call__(
        self,
        function: Callable[..., Any],
        calls: Sequence[tuple[Any, ...]],
        done: Callable[[int, Any], None],
    ) -> None: ...


def run_here(
    function: Callable[..., Any],
    calls: Sequence[tuple[Any, ...]],
    done: Callable[[int, Any], None],
) -> None:
    """Each call in this process, one after another."""
    for n, args in enumerate(calls):
        done(n, function(*args))


def in_order(
    run: Runner,
    function: Callable[..., Any],
    calls: Sequence[tuple[Any, ...]],
    advance: Callable[[int], None],
) -> list[Any]:
    """Every call's result, in the calls' order."""
    results: list[Any] = [None] * len(calls)

    def done(n: int, result: Any) -> None:
        results[n] = result
        advance(1)

    run(function, calls, done)
    return results


@contextlib.contextmanager
def dask_runner(scheduler: str | None, workers: int) -> Iterator[Runner]:
    """Calls as Dask tasks: on a LocalCluster of `workers` processes, or on the scheduler at
    `scheduler` (its workers must see the archive and the signature table at the same paths,
    and the database)."""
    from distributed import Client, LocalCluster, as_completed

    cluster = None
    if scheduler:
        client = Client(scheduler)
    else:
        cluster = LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
        )
        client = Client(cluster)

    def run(
        function: Callable[..., Any],
        calls: Sequence[tuple[Any, ...]],
        done: Callable[[int, Any], None],
    ) -> None:
        # A window of calls at a time, each made as it is submitted: never all arguments at once.
        window = _IN_FLIGHT * max(1, sum(client.nthreads().values()))
        waiting = iter(enumerate(calls))
        position: dict[Any, int] = {}

        def submit(k: int) -> list[Any]:
            futures = []
            for n, args in itertools.islice(waiting, k):
                future = client.submit(function, *args, pure=False)
                position[future.key] = n
                futures.append(future)
            return futures

        finished = as_completed(submit(window))
        for future in finished:
            done(position.pop(future.key), future.result())
            future.release()
            for more in submit(1):
                finished.add(more)

    try:
        yield run
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _analyse_batch(
    paths: list[Path], spec: BankSpec | None, limits: Limits | None
) -> list[ImageRecord]:
    return [analyse_image(p, spec, limits) for p in paths]


def analyse(
    paths: Sequence[Path],
    spec: BankSpec | None,
    limits: Limits,
    run: Runner,
    keep: Callable[[int, ImageRecord], None],
) -> None:
    """Analyse every file, in batches; `keep(image number, record)` as each batch finishes, so
    that no more than a batch per worker is held at once."""
    starts = range(0, len(paths), _BATCH)
    calls = [(list(paths[s : s + _BATCH]), spec, limits) for s in starts]

    def done(n: int, records: list[ImageRecord]) -> None:
        for offset, record in enumerate(records):
            keep(starts[n] + offset, record)

    run(_analyse_batch, calls, done)


def _around_batch(jobs: list[tuple[Path, np.ndarray]], limits: Limits | None) -> list[bytes]:
    return [signature_around(path, stamped, limits) for path, stamped in jobs]


def signatures_around(
    jobs: Sequence[tuple[int, Path, np.ndarray]],
    limits: Limits,
    run: Runner,
    keep: Callable[[int, bytes], None],
) -> None:
    """Each (image number, file, stamped area) signed again off its stamp, in batches;
    `keep(image number, signature)` as each batch finishes."""
    starts = range(0, len(jobs), _BATCH)
    calls = [([(p, m) for _, p, m in jobs[s : s + _BATCH]], limits) for s in starts]

    def done(n: int, signatures: list[bytes]) -> None:
        for offset, signature in enumerate(signatures):
            keep(jobs[starts[n] + offset][0], signature)

    run(_around_batch, calls, done)
