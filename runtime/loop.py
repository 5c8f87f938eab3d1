"""The one consumer loop: poll -> handle -> route -> pause while copies pile up -> checkpoint and commit -> figures.

The script hands it a :class:`Handler`: what happens to the records of a
batch (decode, validate, process, route) and, as its
:class:`runtime.partition_role.PartitionRole`, what it keeps per partition.
Figures are an :class:`Observer`'s, beside the work. On a stop request the
loop ends after its batch, then flushes, checkpoints, commits and closes
(:meth:`runtime.wiring.Wiring.close`).
"""

from __future__ import annotations

import logging
import time
from typing import Protocol

from confluent_kafka import KafkaError, Message

from runtime.access import denied, is_refusal
from runtime.backpressure import Backpressure
from runtime.clients import BrokerStatus
from runtime.offsets import Partition
from runtime.partition_role import PartitionRole
from runtime.reading import next_batch
from runtime.shutdown import StopFlag
from runtime.wiring import Wiring

log = logging.getLogger(__name__)


class Handler(PartitionRole, Protocol):
    """What the script does with each batch, and what it keeps per partition."""

    held: set[Partition]  # partitions the handler paused for its own reasons; backpressure leaves them paused

    def handle(self, records: list[Message]) -> None:
        """decode -> validate -> process -> route each record (copies through ``wiring.copies``)."""

    def poll_timeout_s(self) -> float:
        """How long the next poll may wait for a record."""


class Observer(Protocol):
    def after_batch(self, records: list[Message], started: float) -> None:
        """After each loop: latency, counts, summaries (``started``: monotonic time the handling began)."""

    def finish(self) -> None:
        """After a stop request, once the final checkpoint is committed and the consumer closed: the last figures."""


def consume(wiring: Wiring, handler: Handler, observer: Observer, stop: StopFlag) -> None:
    """Subscribe to the plan's sources and run the loop until ``stop``; then shut down in order."""
    consumer, checkpointed, copies, status = wiring.consumer, wiring.checkpointed, wiring.copies, wiring.clients.status
    backpressure = Backpressure(consumer, copies, wiring.settings.max_copies_in_flight)
    checkpointed.subscribe(list(wiring.plan.sources), handler)
    try:
        wiring.start_transactions(lambda: stop.requested)            # while the group join runs
        while not stop.requested:
            batch = next_batch(consumer, wiring.settings.batch_size,
                               0 if backpressure.paused else handler.poll_timeout_s())     # poll
            status.check()                                           # a refusal or failure the clients reported: stop
            records = checkpointed.not_copied_before(without_errors(batch, status))
            started = time.monotonic()
            handler.handle(records)                                  # decode -> validate -> process -> route
            copies.serve()                                           # hand copies over, take acknowledgements
            checkpointed.producer.poll(0)                            # delivery reports of the checkpoints
            backpressure.apply(checkpointed.owned(), handler.held)   # pause while copies pile up
            checkpointed.checkpoint_if_due()                         # checkpoint and commit, or the transaction
            observer.after_batch(records, started)                   # figures
        log.info("Shutting down: flushing copies, checkpointing, committing, closing the consumer")
    except BaseException as error:
        close_after_error(wiring, error)
        raise
    wiring.close()
    status.check()  # a copy not delivered while closing: exit non-zero; its source was not committed
    observer.finish()
    log.info("Stopped")


def close_after_error(wiring: Wiring, first: BaseException) -> None:
    """Commit what is finished and leave the group; an error on the way is told, and never hides the first."""
    try:
        wiring.close()
    except Exception as secondary:
        if secondary is not first:
            log.warning("While shutting down after the error below: %s", secondary)


def without_errors(batch: list[Message], status: BrokerStatus) -> list[Message]:
    """The records of a batch; error events are logged (end-of-partition is no error), refusals kept in ``status``."""
    records = [msg for msg in batch if msg.error() is None]
    if len(records) != len(batch):
        for msg in batch:
            error = msg.error()
            if error is None or error.code() == KafkaError._PARTITION_EOF:
                continue
            if is_refusal(error):
                status.refuse(denied(error, status.principal, "Read", msg.topic() or ""))
            else:
                log.warning("Consumer error: %s", error.str())
    return records
