"""The main consumer's figures, beside the work: summary file, Prometheus metrics, summary lines.

It observes the handler's running average once per loop and publishes what
changed. Figures say what they cover: this instance's partitions (its log
lines), or the whole group (summary file and gauges). The whole group's
figures are committed state only: each partition as its last checkpoint
stands, this instance's as written (with exactly-once: committed, so an
aborted transaction never shows), the others' as a background thread last read them, a few seconds old.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from typing import Optional

from confluent_kafka import Message

from app import metrics
from app.settings import Topics
from domain.average import PartitionStats, RunningAverage, fmt
from domain.order import Order, Verdict
from runtime.checkpoints import Checkpoint, CheckpointsInBackground, CheckpointStore, partition_checkpoints
from runtime.logs import EventLog
from runtime.metrics import CounterSync, observe_batch, publish_lag
from runtime.routing import key_text
from runtime.summary import write_json_atomic
from runtime.wiring import Wiring

log = logging.getLogger("main-consumer")

SUMMARY_INTERVAL_S = 0.5
OTHERS_REFRESH_S = 3.0


class MainFigures:
    """The runtime's :class:`runtime.loop.Observer` for the main consumer."""

    def __init__(self, wiring: Wiring, average: RunningAverage, topics: Topics, summary_file: Optional[str]) -> None:
        self.wiring, self.average, self.topics, self.summary_file = wiring, average, topics, summary_file
        self._processed = CounterSync(metrics.PROCESSED)
        self._routed: Counter[tuple[str, ...]] = Counter()
        self._last_summary = time.monotonic()
        store = wiring.checkpointed.store  # read in the background: the partitions other members own
        self._others = CheckpointsInBackground(CheckpointStore(wiring.clients, store.topic, store.group), OTHERS_REFRESH_S)

    def after_batch(self, records: list[Message], started: float) -> None:
        observe_batch(records, started, metrics.PROCESSING_SECONDS, metrics.END_TO_END_SECONDS)
        if time.monotonic() - self._last_summary >= SUMMARY_INTERVAL_S:
            totals = self.whole_group(self._others.latest)
            write_summary(self.summary_file, totals, self.wiring.checkpointed.written_at)
            self.publish(totals)
            self._last_summary = time.monotonic()

    def finish(self) -> None:
        """After the final checkpoint: the group's figures as the stats topic now holds them."""
        self._others.stop()
        totals = self.whole_group(self.wiring.checkpointed.store.load())
        write_summary(self.summary_file, totals, self.wiring.checkpointed.written_at)
        log.info("Whole group at shutdown (committed checkpoints): processed=%d average=%s retried=%d "
                 "dead-lettered=%d", totals.processed, fmt(totals.average), totals.retried, totals.dead_lettered)

    def whole_group(self, checkpoints: dict[str, Checkpoint]) -> PartitionStats:
        """Every partition's last checkpoint: this instance's as written, the others' as in ``checkpoints``."""
        group = self.wiring.settings.group_id
        states = {
            (topic, partition): checkpoint.state
            for topic in (self.topics.orders, self.topics.redrive)
            for partition, checkpoint in partition_checkpoints(checkpoints, group, topic).items()
        }
        states.update(self.wiring.checkpointed.written_states())
        totals = PartitionStats()
        for state in states.values():
            totals.add(PartitionStats.of(state))
        return totals

    def publish(self, totals: PartitionStats) -> None:
        """Counts since the last tick, the group's average, and lag per owned partition."""
        self._processed.publish(self.average.processed_here)
        for labels, count in self.average.routing_counts.items():
            delta = count - self._routed[labels]
            if delta:
                if labels[0] == "retry":
                    metrics.ROUTED_TO_RETRY.labels(stage=labels[1], error_class=labels[2]).inc(delta)
                else:
                    metrics.DEAD_LETTERED.labels(reason=labels[1]).inc(delta)
                self._routed[labels] = count
        metrics.RUNNING_COUNT.set(totals.processed)
        if totals.average is not None:
            metrics.RUNNING_AVERAGE.set(totals.average)
        publish_lag(self.wiring.consumer, list(self.average.partitions), metrics.CONSUMER_LAG)  # type: ignore[arg-type]



class MainEvents(EventLog):
    """The main consumer's business events as log lines: one per event at demo rates, a summary at high rates."""

    def __init__(self, average: RunningAverage, topics: Topics, max_retries: int) -> None:
        super().__init__(log, self.summary_line)
        self.average, self.topics, self.max_retries = average, topics, max_retries
        self._window_processed = 0

    def processed(self, order: Order, attempt: int) -> None:
        """A processed order whose line :meth:`wants_line` admitted (the hot path asks first)."""
        owned = self.average.owned()
        self.line("Processed order %s (attempt %d) | price=%.2f | running average=%.2f over %d orders (this "
                  "instance's partitions)", order["orderId"], attempt, order["price"], owned.average, owned.processed)

    def retried(self, verdict: Verdict, delay_s: float) -> None:
        if self.wants_line():
            outcome = ("out of retries: the retry consumer dead-letters it"
                       if verdict.attempt > self.max_retries else f"due in {delay_s:.2f} s")
            self.line("Order %s failed attempt %d (%s) -> %s, %s", verdict.order["orderId"],  # type: ignore[index]
                      verdict.attempt, verdict.failure.error_message, self.topics.retry, outcome)

    def dead_lettered(self, msg: Message, verdict: Verdict) -> None:
        self.event("Dead-lettering %s[%d]@%d key=%s -> %s: %s", msg.topic(), msg.partition(), msg.offset(),
                   key_text(msg), self.topics.dlq, verdict.failure.reason, level=logging.WARNING)

    def summary_line(self, elapsed: float) -> str:
        rate = (self.average.processed_here - self._window_processed) / elapsed
        self._window_processed = self.average.processed_here
        owned = self.average.owned()
        return (
            f"Processed {rate:.0f} orders/s | this instance's partitions: running average={fmt(owned.average)} "
            f"over {owned.processed} orders, retried={owned.retried} dead-lettered={owned.dead_lettered}"
        )


def write_summary(path: Optional[str], stats: PartitionStats, as_of: Optional[float]) -> None:
    """The whole group's figures, replaced atomically; ``as_of``: when the handling that this instance's
    partitions' figures cover ended (epoch s, its last checkpoint), so a rate taken from them is not skewed by
    the wait for the next checkpoint."""
    if path:
        write_json_atomic(path, {"processed": stats.processed, "average": stats.average, "retried": stats.retried,
                                 "dead_lettered": stats.dead_lettered, "as_of": as_of})
