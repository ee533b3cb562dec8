"""Where an investigation's calls run: in this process or as Dask tasks, with their results in
order, and their arguments made only as they are submitted."""

from __future__ import annotations

import operator

from counterfake.investigate.engines import Calls, dask_runner, in_order, run_here


def test_calls_are_made_as_they_are_read() -> None:
    made: list[int] = []
    calls = Calls(range(5), lambda n: (made.append(n), n)[1:])
    assert made == []
    assert calls[2] == (2,)
    assert made == [2]
    assert calls[3:5] == [(3,), (4,)]
    assert len(calls) == 5


def test_in_process_results_come_in_order() -> None:
    calls = Calls(range(10), lambda n: (n, 3))
    assert in_order(run_here, operator.mul, calls, lambda k: None) == [3 * n for n in range(10)]


def test_dask_makes_a_window_of_calls_at_a_time_and_gives_every_result_in_order() -> None:
    made = 0
    finished = 0
    most_waiting = 0

    def make(n: int) -> tuple[int, int]:
        nonlocal made, most_waiting
        made += 1
        most_waiting = max(most_waiting, made - finished)
        return (n, 7)

    def advance(k: int) -> None:
        nonlocal finished
        finished += k

    with dask_runner(None, 2) as run:
        results = in_order(run, operator.mul, Calls(range(60), make), advance)
    assert results == [7 * n for n in range(60)]
    assert made == finished == 60
    # Two workers of one thread each: three calls per thread in flight, at most.
    assert most_waiting <= 6
