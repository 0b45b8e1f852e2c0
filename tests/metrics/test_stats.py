"""corral.metrics.stats: counters a forked worker writes and the master reads, listen queues."""

from __future__ import annotations

import math
import os
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from corral.metrics.stats import (
    BUCKETS,
    RESTART_CAUSES,
    StatsAggregator,
    WorkerStats,
    listen_queue,
    listen_queue_info,
)


def run_in_child(work: Callable[[], None]) -> int:
    """Fork, run `work` in the child, exit; return the child's pid (not yet reaped)."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child's coverage is measured in the child
        code = 0
        try:
            work()
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    return pid


def reap(pid: int) -> int:
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


@pytest.fixture
def aggregator() -> Iterator[tuple[StatsAggregator, list[WorkerStats]]]:
    made: list[WorkerStats] = []
    yield StatsAggregator(), made
    for stats in made:
        stats.close()


def new_worker(pair: tuple[StatsAggregator, list[WorkerStats]]) -> WorkerStats:
    aggregator, made = pair
    stats = WorkerStats()
    made.append(stats)
    aggregator.add(stats)
    return stats


def test_counts_recorded_in_a_forked_worker_reach_the_master(
    aggregator: tuple[StatsAggregator, list[WorkerStats]],
) -> None:
    agg = aggregator[0]
    stats = new_worker(aggregator)

    def serve() -> None:
        for _ in range(3):
            stats.begin()
            stats.record("GET", 200, 0.004)
            stats.end()
        stats.record("POST", 201, 0.3)
        stats.record("DELETE", 404, 0.02)
        stats.record("GET", 503, 12.0)
        stats.begin()  # a request still in flight when the worker stops

    assert reap(run_in_child(serve)) == 0
    totals = agg.collect()
    assert totals.requests["GET", "2xx"] == 3
    assert totals.requests["POST", "2xx"] == 1
    assert totals.requests["DELETE", "4xx"] == 1
    assert totals.requests["GET", "5xx"] == 1
    assert totals.requests_total == 6
    assert totals.status_codes == {200: 3, 201: 1, 404: 1, 503: 1}
    assert totals.in_flight == 1
    assert totals.duration_count == 6
    assert totals.duration_sum == pytest.approx(3 * 0.004 + 0.3 + 0.02 + 12.0)
    buckets = dict(totals.buckets)
    assert buckets[0.005] == 3
    assert buckets[0.025] == 4
    assert buckets[0.5] == 5
    assert buckets[10.0] == 5
    assert buckets[math.inf] == 6
    assert totals.workers == 1


def test_retire_keeps_the_totals_of_workers_that_exited(
    aggregator: tuple[StatsAggregator, list[WorkerStats]],
) -> None:
    agg = aggregator[0]
    first, second = new_worker(aggregator), new_worker(aggregator)

    def busy(stats: WorkerStats, n: int) -> Callable[[], None]:
        def work() -> None:
            for _ in range(n):
                stats.record("GET", 200, 0.001)
            stats.begin()

        return work

    first_pid = run_in_child(busy(first, 5))
    second_pid = run_in_child(busy(second, 7))
    assert reap(first_pid) == 0 and reap(second_pid) == 0
    before = agg.collect()
    assert before.requests_total == 12 and before.in_flight == 2 and before.workers == 2

    agg.retire(first)
    first.close()
    after = agg.collect()
    assert after.requests_total == 12, "a reaped worker's requests must stay counted"
    assert after.duration_count == 12
    assert after.in_flight == 1, "a dead worker has nothing in flight"
    assert after.workers == 1

    agg.retire(first)  # twice (the master's reaping path may repeat): no double counting
    agg.retire(second)
    second.close()
    final = agg.collect()
    assert final.requests_total == 12 and final.workers == 0 and final.in_flight == 0


def test_a_block_closed_without_retire_is_skipped_not_fatal(
    aggregator: tuple[StatsAggregator, list[WorkerStats]],
) -> None:
    agg = aggregator[0]
    stats = new_worker(aggregator)
    stats.record("GET", 200, 0.1)
    stats.close()
    assert agg.collect().requests_total == 0


def test_unknown_methods_and_odd_statuses_are_counted_not_raised(
    aggregator: tuple[StatsAggregator, list[WorkerStats]],
) -> None:
    agg = aggregator[0]
    stats = new_worker(aggregator)
    stats.record("BREW", 418, 0.01)
    stats.record("get", 200, 0.01)  # methods are case-sensitive: not GET
    stats.record("GET", 999, 0.01)
    stats.record("GET", 42, 0.01)
    for seconds in (math.nan, -1.0, math.inf):
        stats.record("HEAD", 204, seconds)
    stats.end()  # an end without a begin leaves the gauge at zero
    totals = agg.collect()
    assert totals.requests["other", "4xx"] == 1
    assert totals.requests["other", "2xx"] == 1
    assert totals.requests["GET", "5xx"] == 2, "statuses outside 100..599 count as 5xx"
    assert totals.requests["HEAD", "2xx"] == 3
    assert totals.status_codes == {418: 1, 200: 1, 204: 3}
    assert dict(totals.buckets)[BUCKETS[0]] == 3, "broken durations count as 0 s"
    assert totals.in_flight == 0


def test_bucket_bounds_are_inclusive(
    aggregator: tuple[StatsAggregator, list[WorkerStats]],
) -> None:
    agg = aggregator[0]
    stats = new_worker(aggregator)
    for bound in BUCKETS:
        stats.record("GET", 200, bound)
    cumulative = [n for _, n in agg.collect().buckets]
    assert cumulative == [*range(1, len(BUCKETS) + 1), len(BUCKETS)]


def test_threaded_stats_lose_no_update_under_contention() -> None:
    stats = WorkerStats(threaded=True)
    agg = StatsAggregator()
    agg.add(stats)
    per_thread, threads = 20_000, 4

    def work() -> None:
        for _ in range(per_thread):
            stats.begin()
            stats.record("GET", 200, 0.001)
            stats.end()

    try:
        workers = [threading.Thread(target=work) for _ in range(threads)]
        for thread in workers:
            thread.start()
        for thread in workers:
            thread.join()
        totals = agg.collect()
        assert totals.requests["GET", "2xx"] == per_thread * threads
        assert totals.duration_count == per_thread * threads
        assert totals.in_flight == 0
    finally:
        stats.close()


def test_restarts_are_counted_by_cause() -> None:
    agg = StatsAggregator()
    agg.count_restart("timeout")
    agg.count_restart("timeout")
    agg.count_restart("oom")
    restarts = agg.collect().restarts
    assert restarts == {cause: 0 for cause in RESTART_CAUSES} | {"timeout": 2, "oom": 1}
    with pytest.raises(ValueError, match="unknown restart cause"):
        agg.count_restart("bored")  # type: ignore[arg-type]


def test_close_is_idempotent() -> None:
    stats = WorkerStats()
    stats.close()
    stats.close()
    assert stats.closed


# --- listen queue -------------------------------------------------------------------------------


@pytest.mark.parametrize("waiting", [0, 1, 5])
def test_listen_queue_counts_connections_not_yet_accepted(waiting: int) -> None:
    listener = socket.create_server(("127.0.0.1", 0), backlog=16)
    clients = []
    try:
        for _ in range(waiting):
            clients.append(socket.create_connection(listener.getsockname()[:2], timeout=5))
        # The handshake completes in the kernel before connect() returns: no waiting needed.
        assert listen_queue(listener) == waiting
        info = listen_queue_info(listener)
        assert info is not None and info[0] == waiting and info[1] >= 16
        if waiting:
            conn, _ = listener.accept()
            conn.close()
            assert listen_queue(listener) == waiting - 1
    finally:
        for client in clients:
            client.close()
        listener.close()


def test_listen_queue_works_on_ipv6() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        listener = socket.create_server(("::1", 0), family=socket.AF_INET6)
    except OSError:
        pytest.skip("::1 not available")
    try:
        client = socket.create_connection(listener.getsockname()[:2], timeout=5)
        assert listen_queue(listener) == 1
        client.close()
    finally:
        listener.close()


def test_listen_queue_is_none_for_unix_and_non_listening_sockets(tmp_path: Path) -> None:
    unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    unix.bind(str(tmp_path / "s"))
    unix.listen()
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname()[:2], timeout=5)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        assert listen_queue(unix) is None
        assert listen_queue(client) is None, "a connected socket has no accept queue"
        assert listen_queue(udp) is None
    finally:
        for sock in (unix, listener, client, udp):
            sock.close()


def test_connection_gauges_by_engine_state() -> None:
    from corral.metrics.prometheus import render
    from corral.metrics.stats import CONNECTION_STATES, StatsAggregator, WorkerStats
    from corral.workers.connection import STATE_NAMES

    assert STATE_NAMES[: len(CONNECTION_STATES)] == CONNECTION_STATES  # one order, two modules
    one, two = WorkerStats(), WorkerStats()
    aggregator = StatsAggregator()
    aggregator.add(one)
    aggregator.add(two)
    one.set_connections([1, 0, 0, 2, 3, 4])
    two.set_connections([0, 1, 0, 0, 1, 0])
    assert aggregator.collect().connections == {
        "head": 1,
        "body": 1,
        "queued": 0,
        "serving": 2,
        "writing": 4,
        "idle": 4,
    }
    aggregator.retire(one)  # a worker that exited holds no connections any more
    assert aggregator.collect().connections["idle"] == 0
    assert 'corral_connections{state="writing"} 1' in render(aggregator, [])
