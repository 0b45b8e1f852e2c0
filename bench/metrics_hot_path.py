"""What the metrics cost a worker per request: WorkerStats and StatsdClient calls, timed.

    .venv/bin/python bench/metrics_hot_path.py

Prints the best of several timeit runs (the least disturbed by other processes) per call, in
nanoseconds. The StatsD figures include the datagram sent every ~28 requests, to a local UDP
port nobody reads. Never part of the tests.
"""

from __future__ import annotations

import socket
import timeit

from corral.metrics.stats import WorkerStats
from corral.metrics.statsd import StatsdClient

NUMBER = 200_000
REPEAT = 9


def best_ns(statement: str, namespace: dict[str, object]) -> float:
    runs = timeit.repeat(statement, globals=namespace, number=NUMBER, repeat=REPEAT)
    return min(runs) / NUMBER * 1e9


CALLS = {
    "record()": "stats.record('GET', 200, 0.0123)",
    "begin() + end()": "stats.begin(); stats.end()",
    "begin + end + record": "stats.begin(); stats.end(); stats.record('POST', 503, 0.3)",
    "StatsdClient.request()": "statsd.request(200, 0.0123)",
    "StatsdClient.flush_if_due()": "statsd.flush_if_due()",
}


def main() -> None:
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    statsd = StatsdClient(f"127.0.0.1:{sink.getsockname()[1]}", "app", "env:bench")
    for threaded in (False, True):
        namespace = {"stats": WorkerStats(threaded=threaded), "statsd": statsd}
        print(f"threaded={threaded}")
        for label, statement in CALLS.items():
            print(f"  {label:28} {best_ns(statement, namespace):7.0f} ns")
    statsd.close()
    sink.close()


if __name__ == "__main__":
    main()
