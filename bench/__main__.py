"""Measure the pipeline against the client's own limits, in one run on one machine.

Run: ``python -m bench [--engine tansu|kafka] [--orders N] [--json PATH] [--plot PATH]``.
It starts its own dev broker of that engine for each phase unless
``--bootstrap-servers`` is given, and prints one table: each figure beside the
matching limit (measured on the same broker, in the same run) and their ratio.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import platform
import random
import re
import statistics
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any, Iterator, Optional

from confluent_kafka import Consumer, KafkaError, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from bench import limits
from bench.commit_interval import commit_interval_curve, plot_commit_intervals
from bench.formats_compare import compare_formats
from bench.pipeline_runs import (
    Script, Topics, drain_rate, produce_retry_records, rate_from_timestamps, read_json_quietly, redrive_lateness, start,
    timestamps, wait_handled,
)
from bench.report import Figure, histogram_quantile, percentile, plot, ratio, table
from devbroker import ENGINE_NAMES, ENGINES, dev_broker, free_port
from runtime.clients import DRAINING_CONSUMER_DEFAULTS
from runtime.logs import setup_logging
from runtime.metrics import LATENCY_BUCKETS
from runtime.reading import next_batch
from runtime.topics import RETRY_TOPIC_CONFIG
from runtime.wiring import CONSUMER_ENFORCED

log = logging.getLogger("bench")
PARTITIONS = limits.PARTITIONS
TOOK_OVER = re.compile(r"Took over \d+ partition\(s\) in ([0-9.]+) s")
ASSIGNED_SOME = re.compile(r"Assigned (?!nothing)")
LATENCY_WARM_UP_S = 5  # the first seconds of each latency run are left out: connections, first fetches
HANDLED = ("processed", "retried", "dead_lettered")


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--engine", choices=ENGINES, default="tansu", help="dev broker of each phase %(default)s")
    parser.add_argument("--bootstrap-servers", help="measure against this broker instead of a fresh dev broker")
    parser.add_argument("--orders", type=int, default=1_000_000, help="orders per throughput run %(default)s")
    parser.add_argument("--repeats", type=int, default=3,
                        help="throughput and latency runs per figure; the median counts %(default)s")
    parser.add_argument("--retry-records", type=int, default=200_000, help="due records for the re-drive rate %(default)s")
    parser.add_argument("--lateness-records", type=int, default=20_000, help="records due over 3 s, for lateness %(default)s")
    parser.add_argument("--latency-rate", type=int, default=2000, help="orders/s of the latency run %(default)s")
    parser.add_argument("--latency-seconds", type=int, default=30, help="length of the latency run %(default)s")
    parser.add_argument("--commit-intervals", type=lambda text: [int(ms) for ms in text.split(",") if ms],
                        default=[100, 250, 1000],
                        help="exactly-once commit intervals (ms) to measure on Apache Kafka; empty skips them 100,250,1000")
    parser.add_argument("--rss-orders", type=int, default=1_000_000, help="orders of the memory run; 0 skips it %(default)s")
    parser.add_argument("--rss-rate", type=int, default=20_000,
                        help="orders/s of the memory run: a steady load the pipeline keeps up with %(default)s")
    parser.add_argument("--formats", action="store_true",
                        help="compare Avro, JSON and Protobuf instead: size, codec time, throughput against each "
                        "format's own limits")
    parser.add_argument("--json", metavar="PATH", help="write the figures as JSON")
    parser.add_argument("--plot", metavar="PATH", help="draw throughput and latency (needs matplotlib)")
    return parser.parse_args(argv)


class Bench:
    """The measurements. Each phase runs on a fresh dev broker (Tansu keeps every record in memory,
    so a broker holding the earlier phases' millions of records would slow the later ones; Apache
    Kafka gets the same clean start), or all on the broker given with ``--bootstrap-servers``."""

    def __init__(self, given_bootstrap: Optional[str], args: argparse.Namespace, workdir: Path) -> None:
        self.given_bootstrap = given_bootstrap
        self.args = args
        self.workdir = workdir
        self.bootstrap = ""
        self.admin: Optional[AdminClient] = None
        self.full_speed_peak_mb: dict[str, float] = {}

    def note_peak(self, script: Script) -> None:
        """The script's peak RSS so far (VmHWM), kept per script across the full-speed runs."""
        script.sample_rss(1.0)
        self.full_speed_peak_mb[script.name] = max(self.full_speed_peak_mb.get(script.name, 0.0), script.peak_rss_mb)

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        if self.given_bootstrap:
            self._use(self.given_bootstrap)
            yield
            return
        broker_log_path = self.workdir / f"{self.args.engine}-{name}.log"
        with broker_log_path.open("wb") as broker_log, dev_broker(self.args.engine, free_port(), output=broker_log) as broker:
            self._use(broker.bootstrap_servers)
            try:
                yield
            finally:
                self.admin = None  # destroyed before its broker stops: a live client would log each refused reconnect

    def _use(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.admin = AdminClient({"bootstrap.servers": bootstrap})

    def topics(self, label: str) -> Topics:
        topics = Topics.fresh(label)
        assert self.admin is not None, "inside a phase"
        futures = self.admin.create_topics(
            [NewTopic(t, PARTITIONS) for t in (topics.orders, topics.redrive, topics.dlq)]
            + [NewTopic(topics.retry, PARTITIONS, config=RETRY_TOPIC_CONFIG)]
            + [NewTopic(topics.stats, 1, config={"cleanup.policy": "compact"})]
        )
        for future in futures.values():
            future.result(30)
        return topics

    def read_limits(self, records: list[tuple[bytes, bytes]]) -> dict[str, float]:
        """Raw produce, then four reads of what it wrote: raw and decoding, librdkafka defaults and large fetches."""
        n = len(records)
        raw = self.topics("raw")
        figures = {"raw_produce": limits.produce_all(self.bootstrap, raw.orders, records)}
        figures["raw_consume_default"] = limits.consume_all(self.bootstrap, raw.orders, PARTITIONS, n, {})
        figures["raw_consume_tuned"] = limits.consume_all(self.bootstrap, raw.orders, PARTITIONS, n, limits.FAST_CONSUMER)
        figures["decode_limit_default"] = limits.decode_limit(self.bootstrap, raw.orders, PARTITIONS, n, {})
        figures["decode_limit_tuned"] = limits.decode_limit(self.bootstrap, raw.orders, PARTITIONS, n, limits.FAST_CONSUMER)
        log.info("limits: %s", {k: round(v) for k, v in figures.items()})
        return figures

    def encode_limit(self, count: int) -> float:
        rate = limits.encode_limit(self.bootstrap, self.topics("encode").orders, count)
        log.info("encode limit: %.0f orders/s", rate)
        return rate

    def producer(self, count: int, fmt: str = "avro") -> float:
        topics = self.topics("producer")
        script = start("producer.producer", self.bootstrap, topics, "--rate", "0", "--count", str(count),
                       "--format", fmt, log_dir=self.workdir)
        deadline = time.monotonic() + 600
        while script.process.poll() is None and time.monotonic() < deadline:
            self.note_peak(script)
            time.sleep(0.2)  # poll: the peak is read until the producer exits
        rate = rate_from_timestamps(timestamps(self.bootstrap, topics.orders, PARTITIONS, count))
        log.info("our producer: %.0f orders/s", rate)
        return rate

    def main_consumer(self, records: list[tuple[bytes, bytes]], fail_rate: float, guarantee: str = "auto",
                      *extra_args: str, fmt: str = "avro") -> float:
        topics = self.topics(f"main{int(fail_rate * 100)}")
        limits.produce_all(self.bootstrap, topics.orders, records)
        summary = self.workdir / f"{topics.orders}.json"
        script = start("consumer.main_consumer", self.bootstrap, topics, "--fail-rate", str(fail_rate),
                       "--guarantee", guarantee, "--format", fmt, "--summary-file", str(summary), *extra_args,
                       log_dir=self.workdir)
        try:
            rate = drain_rate(summary, len(records), HANDLED)
            self.note_peak(script)
        finally:
            script.stop()
        log.info("main consumer at fail rate %g (%s): %.0f orders/s", fail_rate, guarantee, rate)
        return rate

    def take_over(self, records: list[tuple[bytes, bytes]]) -> float:
        """A second main consumer joins after the first handled every record: how long its take-over takes,
        as it reports it (checkpoints loaded, copies made since them scanned)."""
        topics = self.topics("takeover")
        limits.produce_all(self.bootstrap, topics.orders, records)
        summary = self.workdir / f"{topics.orders}.json"
        first = start("consumer.main_consumer", self.bootstrap, topics, "--fail-rate", "0.1", "--summary-file",
                      str(summary), log_dir=self.workdir)
        second = None
        try:
            handled = wait_handled(summary, len(records), HANDLED, timeout_s=900)
            second = start("consumer.main_consumer", self.bootstrap, topics, "--fail-rate", "0.1", log_dir=self.workdir)
            deadline = time.monotonic() + 120
            while not (took := TOOK_OVER.findall(second.log_path.read_text(errors="replace"))):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the second consumer took nothing over; see {second.log_path}")
                time.sleep(0.2)  # poll its log for the take-over it reports
            seconds = max(float(s) for s in took)
        finally:
            first.stop()
            if second is not None:
                second.stop()
        log.info("take-over after %s orders processed and %s retried: %.2f s", handled.get("processed"),
                 handled.get("retried"), seconds)
        return seconds

    def join(self, group_protocol: str) -> float:
        """Start -> first partitions of a main consumer joining a group whose one member owns every partition."""
        topics = self.topics("join")
        group = ["--group-id", f"bench-join-{topics.orders}", "--group-protocol", group_protocol]
        first = start("consumer.main_consumer", self.bootstrap, topics, *group, log_dir=self.workdir)
        second = None
        try:
            first.wait_for_assignment()
            started = time.monotonic()
            second = start("consumer.main_consumer", self.bootstrap, topics, *group, log_dir=self.workdir, name="joining")
            deadline = started + 60
            while not ASSIGNED_SOME.search(second.log_path.read_text(errors="replace")):
                if time.monotonic() > deadline or second.process.poll() is not None:
                    raise RuntimeError(f"the joining consumer got no partitions; see {second.log_path}")
                time.sleep(0.02)  # poll its log for its first partitions
            seconds = time.monotonic() - started
        finally:
            first.stop()
            if second is not None:
                second.stop()
        log.info("start -> first partitions of a joining main consumer (group protocol %s): %.2f s", group_protocol, seconds)
        return seconds

    def retry_rate(self, records: list[tuple[bytes, bytes]]) -> float:
        topics = self.topics("retry")
        now = int(time.time() * 1000)
        produce_retry_records(self.bootstrap, topics.retry, records, [now - 1000] * len(records))
        # Base 0: every record is due at once, whatever its timestamp (which bounds the due time from below).
        script = start("retry.retry_consumer", self.bootstrap, topics, "--backoff-base", "0", log_dir=self.workdir)
        try:
            rate = rate_from_timestamps(timestamps(self.bootstrap, topics.redrive, PARTITIONS, len(records)))
            self.note_peak(script)
        finally:
            script.stop()
        log.info("retry consumer: %.0f records/s re-driven", rate)
        return rate

    def retry_lateness(self, records: list[tuple[bytes, bytes]]) -> list[int]:
        topics = self.topics("lateness")
        script = start("retry.retry_consumer", self.bootstrap, topics, log_dir=self.workdir)
        script.wait_for_assignment()  # so that no record is late for want of a consumer
        rng = random.Random(3)
        # Due times as the main consumer stamps them: after each record's timestamp plus the first
        # backoff (1 s), which bounds a due time from below, and within the longest backoff from
        # now (4.4 s), which bounds it from above.
        start_ms = int(time.time() * 1000) + 1500
        produce_retry_records(self.bootstrap, topics.retry, records,
                              [start_ms + rng.randrange(2_500) for _ in records])
        try:
            lateness = redrive_lateness(self.bootstrap, topics.redrive, PARTITIONS, len(records))
        finally:
            script.stop()
        log.info("retry lateness: p50 %s ms, p99 %s ms, max %s ms", percentile(lateness, 0.5),
                 percentile(lateness, 0.99), max(lateness))
        return lateness

    def end_to_end(self, *main_args: str) -> dict[float, float]:
        """Our main consumer at --latency-rate: its end-to-end latency histogram, the warm-up's records left out."""
        topics = self.topics("latency")
        port = free_port()
        main = start("consumer.main_consumer", self.bootstrap, topics, "--fail-rate", "0", "--metrics-port", str(port),
                     *main_args, log_dir=self.workdir)
        count = self.args.latency_rate * self.args.latency_seconds
        try:
            main.wait_for_assignment()
            producer = start("producer.producer", self.bootstrap, topics, "--rate", str(self.args.latency_rate),
                             "--count", str(count), log_dir=self.workdir)
            warm_up = self.args.latency_rate * LATENCY_WARM_UP_S
            deadline = time.monotonic() + LATENCY_WARM_UP_S + 60
            while metric(port, "orders_processed_total") < warm_up and time.monotonic() < deadline:
                time.sleep(0.05)  # poll until the warm-up's records are processed
            before = latency_buckets(port)
            producer.process.wait(self.args.latency_seconds + 120)
            deadline = time.monotonic() + 60
            while metric(port, "orders_processed_total") < count and time.monotonic() < deadline:
                time.sleep(0.2)  # poll until every order is processed and published
            after = latency_buckets(port)
            return {bound: after[bound] - before.get(bound, 0.0) for bound in after}
        finally:
            main.stop()

    def end_to_end_floor(self) -> dict[float, float]:
        """The same producer at the same rate, read by a bare loop of the same client tuned the same way, assigned
        and caught up first: what the broker and client allow, in the same histogram buckets, warm-up left out."""
        topics = self.topics("floor")
        consumer = Consumer({**DRAINING_CONSUMER_DEFAULTS, **CONSUMER_ENFORCED, "bootstrap.servers": self.bootstrap,
                             "group.id": "bench-floor", "enable.partition.eof": True})
        consumer.assign([TopicPartition(topics.orders, p, 0) for p in range(PARTITIONS)])
        caught_up: set[int] = set()
        deadline = time.monotonic() + 60
        while len(caught_up) < PARTITIONS and time.monotonic() < deadline:
            msg = consumer.poll(0.5)  # fetching from every partition, at its (empty) end
            if msg is not None and msg.error() is not None and msg.error().code() == KafkaError._PARTITION_EOF:
                caught_up.add(msg.partition())
        count = self.args.latency_rate * self.args.latency_seconds
        warm_up = self.args.latency_rate * LATENCY_WARM_UP_S
        producer = start("producer.producer", self.bootstrap, topics, "--rate", str(self.args.latency_rate),
                         "--count", str(count), log_dir=self.workdir)
        latencies: list[float] = []
        seen = 0
        deadline = time.monotonic() + self.args.latency_seconds + 120
        try:
            while seen < count and time.monotonic() < deadline:
                records = [msg for msg in next_batch(consumer, 5000, 0.5) if msg.error() is None]
                now = time.time()
                for msg in records:
                    seen += 1
                    if seen > warm_up:
                        latencies.append(max(0.0, now - msg.timestamp()[1] / 1000))
        finally:
            consumer.close()
            producer.stop()
        return {bound: sum(1 for latency in latencies if latency <= bound) for bound in (*LATENCY_BUCKETS, math.inf)}

    def memory(self, count: int) -> dict[str, float]:
        topics = self.topics("rss")
        summary = self.workdir / f"{topics.orders}.json"
        scripts = [
            start("consumer.main_consumer", self.bootstrap, topics, "--fail-rate", "0.1", "--summary-file", str(summary),
                  log_dir=self.workdir),
            start("retry.retry_consumer", self.bootstrap, topics, "--backoff-base", "0.2", "--backoff-max", "0.8",
                  log_dir=self.workdir),
            start("dlq.dlq_consumer", self.bootstrap, topics, log_dir=self.workdir),
            start("producer.producer", self.bootstrap, topics, "--rate", str(self.args.rss_rate), "--count", str(count),
                  log_dir=self.workdir),
        ]
        try:
            deadline = time.monotonic() + 900
            while time.monotonic() < deadline:
                processed = (read_json_quietly(summary) or {}).get("processed") or 0
                progress = processed / count
                for script in scripts:
                    script.sample_rss(progress)
                if processed >= count * 0.89:  # about 10 % end in the DLQ or wait for a retry
                    break
                time.sleep(0.5)  # poll: one memory sample every half second
        finally:
            for script in scripts:
                script.stop()
        result = {}
        for script in scripts:
            warm = [rss for progress, rss in script.rss_samples if 0.2 <= progress <= 0.3]
            end = [rss for progress, rss in script.rss_samples if progress >= 0.8]
            growth = (max(end) - max(warm)) if warm and end else float("nan")
            log.info("%s: peak RSS %.0f MB at %d orders/s, growth after warm-up %.1f MB", script.name, script.peak_rss_mb,
                     self.args.rss_rate, growth)
            result[script.name] = script.peak_rss_mb
            result[script.name + ".growth"] = growth
        return result


def metric(port: int, name: str) -> float:
    """One unlabelled sample of a metrics endpoint (0 if absent)."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def latency_buckets(port: int) -> dict[float, float]:
    """Cumulative counts of the main consumer's end-to-end latency histogram, by upper bound (s)."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    buckets: dict[float, float] = {}
    for line in text.splitlines():
        if line.startswith("orders_end_to_end_latency_seconds_bucket{"):
            bound = line.split('le="', 1)[1].split('"', 1)[0]
            buckets[float(bound)] = float(line.rsplit(" ", 1)[1])
    return buckets


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    setup_logging("INFO")
    with tempfile.TemporaryDirectory(prefix="bench-") as workdir:
        if args.formats:
            return compare_formats(Bench(args.bootstrap_servers, args, Path(workdir)), args)
        return run(args.bootstrap_servers, args, Path(workdir))


def run(given_bootstrap: Optional[str], args: argparse.Namespace, workdir: Path) -> int:
    bench = Bench(given_bootstrap, args, workdir)
    records = limits.encoded_orders(args.orders)
    results: dict[str, Any] = {}

    def add(key: str, figure: Figure) -> None:
        results[key] = figure

    # Throughput on a shared machine: each figure, limits and ours alike, is the median of
    # --repeats runs, interleaved so that a slow spell of the machine hits all of them alike.
    runs: dict[str, list[float]] = {}

    def keep(figures: dict[str, float]) -> None:
        for key, value in figures.items():
            runs.setdefault(key, []).append(value)

    for _ in range(args.repeats):
        with bench.phase("read-limits"):
            keep(bench.read_limits(records))
        with bench.phase("encode-limit"):
            keep({"encode_limit": bench.encode_limit(args.orders)})
        with bench.phase("producer"):
            keep({"producer": bench.producer(args.orders)})
        for fail_rate, key in ((0.0, "main_consumer_fail0"), (0.1, "main_consumer_fail10")):
            with bench.phase(key):
                keep({key: bench.main_consumer(records, fail_rate)})
            if args.engine == "kafka":  # what exactly-once (auto's choice there) costs beside at-least-once
                with bench.phase(key):
                    keep({key + "_at_least_once": bench.main_consumer(records, fail_rate, "at-least-once")})
    typical = {key: statistics.median(values) for key, values in runs.items()}
    log.info("throughput runs: %s", {key: [round(v) for v in values] for key, values in runs.items()})
    # A limit is the client at its fastest: whichever settings won.
    decode_limit = max(typical["decode_limit_default"], typical["decode_limit_tuned"])
    raw_consume = max(typical["raw_consume_default"], typical["raw_consume_tuned"])
    add("raw_produce", Figure(typical["raw_produce"], "orders/s"))
    add("raw_consume", Figure(raw_consume, "orders/s"))
    add("decode_limit", Figure(decode_limit, "orders/s"))
    add("encode_limit", Figure(typical["encode_limit"], "orders/s"))
    add("producer", Figure(typical["producer"], "orders/s", ratio(typical["producer"], typical["encode_limit"]), "encode_limit", ">= 0.85"))
    for key, target in (("main_consumer_fail0", ">= 0.85"), ("main_consumer_fail10", ">= 0.6")):
        add(key, Figure(typical[key], "orders/s", ratio(typical[key], decode_limit), "decode_limit", target))
        if key + "_at_least_once" in typical:
            value = typical[key + "_at_least_once"]
            add(key + "_at_least_once", Figure(value, "orders/s", ratio(value, decode_limit), "decode_limit"))
    with bench.phase("take-over"):
        # About 1,000,000 processed at 10 % failures: a partition's history, which a take-over must not read.
        history = records + records[: len(records) // 9]
        add("take_over_s", Figure(bench.take_over(history), "s", target="< 10"))
    # Start -> first partitions of a joining member: KIP-848's consumer protocol where auto chooses it (Apache
    # Kafka 4), the classic one beside it; on Tansu auto chooses classic.
    joins: dict[str, list[float]] = {}
    for _ in range(args.repeats):
        with bench.phase("join"):
            for protocol in ("auto", "classic") if args.engine == "kafka" else ("auto",):
                joins.setdefault(protocol, []).append(bench.join(protocol))
    add("join_s", Figure(statistics.median(joins["auto"]), "s", target="< 2" if args.engine == "kafka" else None))
    if "classic" in joins and args.engine == "kafka":
        add("join_s_classic", Figure(statistics.median(joins["classic"]), "s"))
    retry_records = records[: args.retry_records]
    with bench.phase("retry-redrive"):
        add("retry_redrive", Figure(bench.retry_rate(retry_records), "records/s"))
    with bench.phase("retry-lateness"):
        lateness = bench.retry_lateness(records[: args.lateness_records])
    add("retry_lateness_p50_ms", Figure(percentile(lateness, 0.5), "ms"))
    add("retry_lateness_p99_ms", Figure(percentile(lateness, 0.99), "ms", target="< 200"))
    add("retry_lateness_max_ms", Figure(max(lateness), "ms"))
    add("retries_early", Figure(sum(1 for late in lateness if late < 0), "records", target="0"))
    # The floor and our consumer, --repeats times interleaved: a p99 moves more between runs than any rate does.
    modes = (("", ()), ("_at_least_once", ("--guarantee", "at-least-once"))) if args.engine == "kafka" else (("", ()),)
    latency: dict[str, list[dict[float, float]]] = {}
    for _ in range(args.repeats):
        with bench.phase("latency-floor"):
            latency.setdefault("floor", []).append(bench.end_to_end_floor())
        for suffix, main_args in modes:
            with bench.phase("latency"):
                latency.setdefault(suffix, []).append(bench.end_to_end(*main_args))

    def median_quantile(runs: list[dict[float, float]], share: float) -> float:
        return statistics.median(histogram_quantile(buckets, share) for buckets in runs) * 1000

    for share, name in ((0.5, "p50"), (0.99, "p99")):
        add(f"e2e_floor_{name}_ms", Figure(median_quantile(latency["floor"], share), "ms"))
    log.info("end-to-end floor (a bare loop): p99 of each run %s ms",
             [round(histogram_quantile(buckets, 0.99) * 1000, 1) for buckets in latency["floor"]])
    for suffix, main_args in modes:
        p50, p99 = median_quantile(latency[suffix], 0.5), median_quantile(latency[suffix], 0.99)
        log.info("end-to-end, main consumer %s: p99 of each run %s ms", " ".join(main_args) or "(auto)",
                 [round(histogram_quantile(buckets, 0.99) * 1000, 1) for buckets in latency[suffix]])
        add("e2e_p50_ms" + suffix, Figure(p50, "ms", ratio(p50, results["e2e_floor_p50_ms"].value), "e2e_floor_p50_ms"))
        exactly_once = args.engine == "kafka" and not suffix
        add("e2e_p99_ms" + suffix, Figure(p99, "ms", ratio(p99, results["e2e_floor_p99_ms"].value), "e2e_floor_p99_ms",
                                          "< 50" if exactly_once else "ratio <= 1.5"))
    # The plot's histogram: every run of auto's choice added up.
    plotted_buckets = {bound: sum(buckets[bound] for buckets in latency[""]) for bound in latency[""][0]}
    if args.engine == "kafka" and args.commit_intervals:
        curve = commit_interval_curve(bench, records, args.commit_intervals)
        results["commit_interval"] = {f"{ms} ms: {name}": figure for ms, figures in curve.items()
                                      for name, figure in figures.items()}
        if args.plot:
            # Beside the main plot, never over it: matplotlib saves a path without a suffix as .png.
            main_plot = Path(args.plot)
            beside = main_plot.with_name(f"{main_plot.stem}-commit-interval{main_plot.suffix or '.png'}")
            plot_commit_intervals(str(beside), curve,
                                  f"exactly-once on {ENGINE_NAMES[args.engine]}: commit interval")
    if args.rss_orders:
        with bench.phase("memory"):
            memory = bench.memory(args.rss_orders)
        results["peak_rss_mb"] = {
            name: Figure(max(value, bench.full_speed_peak_mb.get(name, 0.0)), "MB", target="< 150")
            for name, value in memory.items() if not name.endswith(".growth")
        }
        results["rss_growth_after_warmup_mb"] = {
            name[: -len(".growth")]: Figure(value, "MB", target="flat") for name, value in memory.items() if name.endswith(".growth")
        }
    results["peak_rss_full_speed_mb"] = {name: Figure(value, "MB") for name, value in bench.full_speed_peak_mb.items()}
    rows = [(key, figure) for key, figure in results.items() if isinstance(figure, Figure)]
    for group in ("commit_interval", "peak_rss_mb", "peak_rss_full_speed_mb", "rss_growth_after_warmup_mb"):
        rows += [(f"{group} {name}", figure) for name, figure in results.get(group, {}).items()]
    machine = f"{platform.processor() or platform.machine()}, {platform.python_implementation()} {platform.python_version()}"
    broker = given_bootstrap or f"a fresh dev broker ({ENGINE_NAMES[args.engine]}) per phase"
    guarantee = "exactly-once (auto), at-least-once beside it" if args.engine == "kafka" else "at-least-once (auto)"
    print(f"\nkafka-orders benchmark: {args.orders:,} orders per throughput run, median of {args.repeats}; "
          f"broker: {broker}; main consumer: {guarantee}; {machine}\n")
    print(table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(
            {key: (value.as_json() if isinstance(value, Figure) else {k: v.as_json() for k, v in value.items()})
             for key, value in results.items()}, indent=2))
    if args.plot:
        throughput = [
            ("producer", results["producer"].value, typical["encode_limit"]),
            ("main consumer, 0 % failures", results["main_consumer_fail0"].value, decode_limit),
            ("main consumer, 10 % failures", results["main_consumer_fail10"].value, decode_limit),
            ("retry re-drive", results["retry_redrive"].value, None),
        ]
        plot(args.plot, throughput, plotted_buckets, f"kafka-orders benchmark, {args.orders:,} orders, {broker}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
