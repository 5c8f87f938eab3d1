"""``python -m bench --formats``: Avro, JSON and Protobuf side by side, each against its own limits.

Per format: bytes per order, encode and decode time per order in this
process (best of 3 over 100,000 orders), the encode and decode limits on the
broker (generate + encode + produce; consume + decode), and our producer and
main consumer (0 % failures) with ``--format``, each with its ratio to that
format's own limit. Throughput figures are medians of ``--repeats`` runs, taken in turn.
"""

from __future__ import annotations

import json
import logging
import platform
import random
import statistics
import time
from pathlib import Path
from typing import Any, ContextManager, Protocol

from bench import limits
from bench.pipeline_runs import Topics
from bench.report import Figure, ratio, table
from devbroker import ENGINE_NAMES
from domain.codecs import CODECS, Codec
from producer.orders import random_order

log = logging.getLogger("bench")
CODEC_SAMPLE = 100_000


class Runs(Protocol):
    """What the comparison asks of the benchmark (:class:`bench.__main__.Bench`): phases and its runs."""

    bootstrap: str

    def phase(self, name: str) -> ContextManager[None]: ...

    def topics(self, label: str) -> Topics: ...

    def producer(self, count: int, fmt: str = "avro") -> float: ...

    def main_consumer(self, records: list[tuple[bytes, bytes]], fail_rate: float, guarantee: str = "auto",
                      *extra_args: str, fmt: str = "avro") -> float: ...


def codec_times_us(codec: Codec) -> tuple[float, float, float]:
    """(bytes per order, encode µs per order, decode µs per order), best of 3 over CODEC_SAMPLE orders."""
    rng = random.Random(5)
    orders = [random_order(rng) for _ in range(CODEC_SAMPLE)]
    values = [codec.encode(order) for order in orders]
    encode = min(_timed(lambda: [codec.encode(order) for order in orders]) for _ in range(3))
    decode = min(_timed(lambda: [codec.decode(value) for value in values]) for _ in range(3))
    size = sum(len(value) for value in values) / len(values)
    return size, encode / CODEC_SAMPLE * 1e6, decode / CODEC_SAMPLE * 1e6


def _timed(work: Any) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def compare_formats(bench: Runs, args: Any) -> int:
    runs: dict[str, list[float]] = {}
    records = {name: limits.encoded_orders(args.orders, codec=codec) for name, codec in CODECS.items()}
    for _ in range(args.repeats):
        for name, codec in CODECS.items():
            with bench.phase(f"{name}-limits"):
                topics = bench.topics(f"{name}lim")
                limits.produce_all(bench.bootstrap, topics.orders, records[name])
                runs.setdefault(f"{name} decode_limit", []).append(limits.decode_limit(
                    bench.bootstrap, topics.orders, limits.PARTITIONS, len(records[name]), limits.FAST_CONSUMER, codec))
                runs.setdefault(f"{name} encode_limit", []).append(
                    limits.encode_limit(bench.bootstrap, bench.topics(f"{name}enc").orders, args.orders, codec))
            with bench.phase(f"{name}-producer"):
                runs.setdefault(f"{name} producer", []).append(bench.producer(args.orders, name))
            with bench.phase(f"{name}-main"):
                runs.setdefault(f"{name} main_consumer", []).append(bench.main_consumer(records[name], 0.0, fmt=name))
    typical = {key: statistics.median(values) for key, values in runs.items()}
    log.info("format runs: %s", {key: [round(v) for v in values] for key, values in runs.items()})
    rows: list[tuple[str, Figure]] = []
    results: dict[str, dict[str, Any]] = {}
    for name, codec in CODECS.items():
        size, encode_us, decode_us = codec_times_us(codec)
        decode_limit, encode_limit = typical[f"{name} decode_limit"], typical[f"{name} encode_limit"]
        figures = {
            "bytes_per_order": Figure(size, "bytes"),
            "encode_us": Figure(encode_us, "µs/order"),
            "decode_us": Figure(decode_us, "µs/order"),
            "encode_limit": Figure(encode_limit, "orders/s"),
            "decode_limit": Figure(decode_limit, "orders/s"),
            "producer": Figure(typical[f"{name} producer"], "orders/s", ratio(typical[f"{name} producer"], encode_limit),
                               f"{name} encode_limit"),
            "main_consumer_fail0": Figure(typical[f"{name} main_consumer"], "orders/s",
                                          ratio(typical[f"{name} main_consumer"], decode_limit), f"{name} decode_limit"),
        }
        results[name] = figures
        rows += [(f"{name} {key}", figure) for key, figure in figures.items()]
    machine = f"{platform.processor() or platform.machine()}, {platform.python_implementation()} {platform.python_version()}"
    broker = args.bootstrap_servers or f"a fresh dev broker ({ENGINE_NAMES[args.engine]}) per phase"
    print(f"\nkafka-orders formats: {args.orders:,} orders per throughput run, median of {args.repeats}; "
          f"broker: {broker}; {machine}\n")
    print(table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(
            {name: {key: figure.as_json() for key, figure in figures.items()} for name, figures in results.items()},
            indent=2))
    if args.plot:
        plot_formats(args.plot, results)
    return 0


def plot_formats(path: str, results: dict[str, dict[str, Figure]]) -> None:
    """Grouped bars: per format, the two limits beside our producer and main consumer."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measures = ["encode_limit", "producer", "decode_limit", "main_consumer_fail0"]
    fig, ax = plt.subplots(figsize=(9, 4.5))
    width = 0.8 / len(measures)
    for index, measure in enumerate(measures):
        ax.bar([x + index * width for x in range(len(results))], [figures[measure].value / 1000 for figures in
               results.values()], width, label=measure.replace("_", " "))
    ax.set_xticks([x + width * (len(measures) - 1) / 2 for x in range(len(results))], list(results))
    ax.set_ylabel("thousand orders/s")
    ax.set_title("kafka-orders: formats against their own limits")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
