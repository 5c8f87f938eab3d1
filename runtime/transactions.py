"""Exactly-once with Kafka transactions: copies, checkpoints and consumed offsets commit together.

One transactional producer per instance (confluent-kafka-python's
``examples/eos-transactions.py``): every routed copy and every checkpoint is
produced inside the open transaction, and the consumed offsets join it with
``send_offsets_to_transaction``, which carries the consumer group's
generation. A member that stalled past its session (a zombie) and lost its
partitions is refused by the group coordinator at that step, so its
transaction aborts and nothing it wrote becomes visible to ``read_committed``
readers. The guarantee needs a broker whose transactions hold: Apache Kafka
does; Tansu delivers aborted records (``python -m bench.broker_differences``),
so there ``auto`` chooses at-least-once, which the copy scan of
:mod:`runtime.copies` keeps free of duplicates after crashes, not after stalls.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from typing import Any, Callable, Optional

from confluent_kafka import KafkaError, KafkaException, Producer, TopicPartition

from runtime.access import denied, is_refusal
from runtime.clients import PRODUCER_ENFORCED, BrokerStatus, Clients, fatal_error, patiently
from runtime.settings import AT_LEAST_ONCE, AUTO, EXACTLY_ONCE, ConsumerSettings
from runtime.shutdown import Deadline

log = logging.getLogger(__name__)

TRANSACTION_TIMEOUT_S = 30.0
OFFSETS_DEADLINE_S = TRANSACTION_TIMEOUT_S + 5
COMMIT_ATTEMPTS = 3
INIT_ATTEMPT_S = 5.0  # init_transactions resumes where a timed-out call left off
ABORT_AT_SHUTDOWN_S = 5.0  # an abort after a shutdown's deadline: an open transaction holds back read_committed readers
# A broker with a transaction coordinator reports the settings of its transaction state log.
_COORDINATOR_SETTING = "transaction.state.log.replication.factor"


def resolve_guarantee(choice: str, clients: Clients, transactional_id: str,
                      should_stop: Callable[[], bool] = lambda: False) -> Optional[tuple[str, str]]:
    """The guarantee to run with, and why (for the start-up line); None if asked to stop while the broker was away.

    ``auto`` reads the broker's settings where the principal may (Tansu and an
    open Apache Kafka); most production clusters grant no DescribeConfigs on
    the cluster, and there it initialises a transactional producer instead:
    that works wherever the broker has transactions and the principal may use
    this transactional.id.
    """
    if choice != AUTO:
        return choice, "asked for"
    try:
        coordinator = patiently(lambda: _COORDINATOR_SETTING in clients.broker_settings(), clients.status,
                                "read the broker's settings", should_stop)
    except KafkaException as exc:
        if not is_refusal(exc.args[0]):
            raise
        return _try_transactions(clients, transactional_id, should_stop)
    if coordinator is None:
        return None
    if coordinator:
        return EXACTLY_ONCE, "auto: the broker has a transaction coordinator"
    return AT_LEAST_ONCE, "auto: the broker reports no transaction coordinator"


def _try_transactions(clients: Clients, transactional_id: str,
                      should_stop: Callable[[], bool]) -> Optional[tuple[str, str]]:
    producer = clients.producer({}, {**PRODUCER_ENFORCED, "transactional.id": transactional_id})
    try:
        if patiently(lambda: producer.init_transactions(TRANSACTION_TIMEOUT_S) or True, clients.status,
                     "initialise transactions", should_stop) is None:
            return None
    except KafkaException as exc:
        if not is_refusal(exc.args[0]):
            raise
        return AT_LEAST_ONCE, (f"auto: {clients.status.principal} may not use transactional.id {transactional_id} "
                               f"({exc.args[0].str()}); grant Write and Describe on it for exactly-once")
    return EXACTLY_ONCE, "auto: transactions initialised (the broker's settings need rights on the cluster to read)"


# A crashed instance's open transaction holds back read_committed readers until it times out (default 60 s).
TRANSACTION_DEFAULTS = {"transaction.timeout.ms": 10_000}


def transactional_id(settings: ConsumerSettings) -> str:
    return settings.transactional_id or f"{settings.group_id}-{socket.gethostname()}-{os.getpid()}"


class Transactions:
    """The open transaction of one producer, from :meth:`begin` on; :meth:`commit` ends it with the offsets and
    opens the next.

    A producer fenced or failed for good (its transaction timed out on the
    coordinator during a stall or a broker outage), wherever librdkafka reports
    it (its error callback, ``produce``, ``flush``, commit, abort), is replaced at the next
    commit by a new one with the same transactional.id, and the users of the
    old one are told (``on_renewed``); the caller rewinds.
    """

    def __init__(self, new_producer: Callable[[Callable[[KafkaError], None]], Producer],
                 group_metadata: Callable[[], Any], status: BrokerStatus, transactional_id: str) -> None:
        """``new_producer(on_fatal)``: a producer whose fatal errors go to ``on_fatal``. ``status``: where
        refusals are kept (:class:`runtime.clients.BrokerStatus`); one stops the transactions."""
        self.transactional_id = transactional_id
        self.new_producer = new_producer
        self.group_metadata = group_metadata
        self.status = status
        self.on_renewed: list[Callable[[Producer], None]] = []
        self.generation = 0
        self.void: Optional[KafkaError] = None  # the fatal error of the current producer, reported by its callback
        self.begun = False  # a stop request may come before the first transaction opens: then nothing is to commit
        self.deadline: Optional[Deadline] = None  # set at shutdown (finish_by)
        self.producer = self._new_producer()

    def _new_producer(self) -> Producer:
        self.generation += 1
        self.void = None
        generation = self.generation
        return self.new_producer(lambda error: self._failed_for_good(generation, error))

    def begin(self, should_stop: Callable[[], bool] = lambda: False) -> None:
        """Initialise transactions for this transactional.id (fencing any earlier producer of it) and open the first,
        unless asked to stop first (then :attr:`begun` stays False).

        A script calls it once its consumer has subscribed: the group join then runs while this waits for the
        transaction coordinator, in short attempts, so that a stop request during a coordinator failover is heard.
        """
        producer = self.producer
        try:
            if patiently(lambda: producer.init_transactions(INIT_ATTEMPT_S) or True, self.status,
                         "initialise transactions", should_stop) is None:
                return
        except KafkaException as exc:
            if is_refusal(exc.args[0]):
                raise denied(exc.args[0], self.status.principal, "Write", self.transactional_id) from None
            raise
        producer.begin_transaction()
        self.begun = True

    def finish_by(self, deadline: Deadline) -> None:
        """Shutting down: every call from now on returns by ``deadline``, and a failed transaction is aborted,
        not followed by a new producer: the next owner takes over from the last committed checkpoints."""
        self.deadline = deadline

    def _wait_s(self, longest: float = TRANSACTION_TIMEOUT_S) -> float:
        return longest if self.deadline is None else self.deadline.left(longest)

    def _abort_wait_s(self) -> float:
        return max(self._wait_s(), ABORT_AT_SHUTDOWN_S)

    def flush(self) -> bool:
        """Wait for every copy's acknowledgement; False if the transaction failed meanwhile (aborted, or the
        producer renewed): the caller rewinds."""
        wait_s = self._wait_s()
        try:
            unacknowledged = self.producer.flush(wait_s)
        except KafkaException as exc:
            self._failed(exc.args[0], "the copies could not be flushed")
            return False
        except SystemError:  # confluent-kafka 2.16.1 raises a fenced producer's fatal error from flush() this way
            self._renew(self.void, "the copies could not be flushed")
            return False
        if unacknowledged:
            self.abort(f"{unacknowledged} record(s) not acknowledged within {wait_s:.1f} s")
            return False
        return True

    def commit(self, write_last: Callable[[Producer], None], offsets: list[TopicPartition]) -> bool:
        """Produce with ``write_last`` (the checkpoints), then commit them, what was produced before, and ``offsets``.

        False if the transaction was aborted instead: the caller rewinds to the last committed state. Once
        the cluster refused something (a missing ACL), every commit aborts and raises that refusal.
        """
        self.status.check()
        if self.void is not None:
            self._renew(self.void, "the transaction could not commit")
            return False
        try:
            write_last(self.producer)
            if offsets:
                self._send_offsets(offsets)
            self._commit_with_retries()
        except KafkaException as exc:
            self._failed(exc.args[0], "the transaction could not commit")
            return False
        except TimeoutError as exc:
            self._renew(None, f"the offsets were not added to the transaction within {exc.args[0]:.1f} s")
            return False
        self.producer.begin_transaction()
        return True

    def _send_offsets(self, offsets: list[TopicPartition]) -> None:
        """``send_offsets_to_transaction`` under a deadline of our own: librdkafka 2.16 can block in it for good
        once the group coordinator's broker went away (confluentinc/librdkafka#5456, #5511)."""
        outcome: list[BaseException | None] = []
        metadata = self.group_metadata()

        def call() -> None:
            try:
                self.producer.send_offsets_to_transaction(offsets, metadata, self._wait_s())
                outcome.append(None)
            except BaseException as exc:  # handed to the caller's thread
                outcome.append(exc)

        caller = threading.Thread(target=call, name="send-offsets", daemon=True)
        caller.start()
        deadline_s = self._wait_s(OFFSETS_DEADLINE_S)
        caller.join(deadline_s)
        if not outcome:
            raise TimeoutError(deadline_s)  # the call stays blocked in the old producer, which is replaced
        if outcome[0] is not None:
            raise outcome[0]

    def abort(self, why: str) -> None:
        """Discard every copy, checkpoint and offset of the open transaction, and open the next."""
        if not self.begun:
            return
        log.warning("Aborting the open transaction: %s. Nothing it wrote becomes visible", why)
        try:
            self.producer.abort_transaction(self._abort_wait_s())
            self.producer.begin_transaction()
        except KafkaException as exc:
            if exc.args[0].fatal():
                self._renew(exc.args[0], "the transaction could not abort")
            elif self.deadline is not None:
                log.warning("The transaction did not abort in time (%s); its coordinator aborts it after "
                            "transaction.timeout.ms", exc.args[0].str())
            else:
                raise fatal_error(exc.args[0]) from None

    def _failed_for_good(self, generation: int, error: KafkaError) -> None:
        """The error callback's fatal error: kept for the next commit, which renews the producer (a replaced
        producer's late report is ignored)."""
        if generation != self.generation or self.void is not None:
            return
        self.void = error
        log.warning("This instance's transactional producer failed for good (%s); its open transaction is void, "
                    "and the producer is replaced at the next commit", error.str())

    def _failed(self, error: KafkaError, what: str) -> None:
        """After any failure inside the transaction (a refused offset commit, a copy that timed out, a produce
        refused because the transaction had already failed): abort it, or renew a fenced producer; a refusal
        (a missing ACL) aborts it and stops."""
        if is_refusal(error):
            self.status.refuse(denied(error, self.status.principal, "Write"))
        if self.status.refused is not None:
            with contextlib.suppress(KafkaException):  # nothing of it becomes visible either way
                self.producer.abort_transaction(self._abort_wait_s())
            self.status.check()
        if error.fatal():
            self._renew(error, what)
        else:
            self.abort(f"{what} ({error.str()}); this member was fenced, lost its partitions, or the broker failed")

    def _renew(self, error: Optional[KafkaError], what: str) -> None:
        why = f"was fenced ({error.str()})" if error is not None else "is stuck"
        if self.deadline is not None:
            log.warning("%s: this instance's producer %s; its open transaction is void, and shutting down, it "
                        "starts no other: the next owner takes over from the last committed checkpoints", what, why)
            return
        log.warning("%s: this instance's producer %s; its open transaction is void. Starting a new producer with "
                    "the same transactional.id, which fences the old one", what, why)
        # The replaced producer is released once nothing refers to it: closing a fenced one here warns from inside
        # confluent-kafka and leaves an exception set that a later call trips over (SystemError), measured on 2.16.1.
        self.producer = self._new_producer()
        self.begin()
        for renewed in self.on_renewed:
            renewed(self.producer)

    def close(self) -> None:
        """Abort what the last commit did not take (after a failed final checkpoint)."""
        if not self.begun:
            return
        try:
            self.producer.abort_transaction(self._abort_wait_s())
        except KafkaException as exc:
            log.debug("No transaction to abort at close (%s)", exc.args[0].str())

    def _commit_with_retries(self) -> None:
        for attempt in range(1, COMMIT_ATTEMPTS + 1):
            try:
                self.producer.commit_transaction(self._wait_s())
                return
            except KafkaException as exc:
                if not exc.args[0].retriable() or attempt == COMMIT_ATTEMPTS:
                    raise
                log.warning("Transaction commit not confirmed (%s); trying again", exc.args[0].str())
