"""Exactly-once's commit interval: throughput and end-to-end p99 at each ``--commit-interval-ms``, on Apache Kafka.

A transaction commit holds the main consumer's loop for a few broker round
trips, so a shorter interval costs throughput and puts more records behind a
commit; a longer one keeps copies from ``read_committed`` readers longer.
"""

from __future__ import annotations

import logging
from typing import Any

from bench.report import Figure, histogram_quantile

log = logging.getLogger("bench")


def commit_interval_curve(bench: Any, records: list[tuple[bytes, bytes]], intervals_ms: list[int]) -> dict[int, dict[str, Figure]]:
    """Per interval: main consumer throughput at 10 % failures and end-to-end p99 at the latency rate, exactly-once."""
    curve: dict[int, dict[str, Figure]] = {}
    for interval in intervals_ms:
        flag = ("--commit-interval-ms", str(interval))
        with bench.phase(f"commit-{interval}"):
            rate = bench.main_consumer(records, 0.1, "exactly-once", *flag)
        with bench.phase(f"commit-{interval}-latency"):
            buckets = bench.end_to_end("--guarantee", "exactly-once", *flag)
        curve[interval] = {
            "10 % failures": Figure(rate, "orders/s"),
            "end-to-end p99": Figure(histogram_quantile(buckets, 0.99) * 1000, "ms"),
        }
        log.info("commit interval %d ms: %.0f orders/s at 10 %% failures, end-to-end p99 %.1f ms", interval, rate,
                 curve[interval]["end-to-end p99"].value)
    return curve


def plot_commit_intervals(path: str, curve: dict[int, dict[str, Figure]], title: str) -> None:
    """Throughput and p99 against the commit interval."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise SystemExit("--plot needs matplotlib: pip install -r requirements-bench.txt") from exc

    intervals = sorted(curve)
    figure, throughput = plt.subplots(figsize=(7, 4.5))
    throughput.plot(intervals, [curve[i]["10 % failures"].value for i in intervals], "o-", color="tab:blue")
    throughput.set_xscale("log")
    throughput.set_xticks(intervals, [f"{i} ms" for i in intervals])
    throughput.set_xlabel("--commit-interval-ms")
    throughput.set_ylabel("orders/s at 10 % failures", color="tab:blue")
    latency = throughput.twinx()
    latency.plot(intervals, [curve[i]["end-to-end p99"].value for i in intervals], "s--", color="tab:red")
    latency.set_ylabel("end-to-end p99 at the latency rate (ms)", color="tab:red")
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
