"""Wiring of a checkpointed consumer: topics, clients, the delivery guarantee, the copies.

Built in each script's ``main()``, never at import. With exactly-once (chosen
by the settings' guarantee), one transactional producer makes the copies and
the checkpoints; with at-least-once an idempotent producer makes them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional

from confluent_kafka import Consumer

from runtime.checkpointed import CheckpointedConsumer
from runtime.checkpoints import CheckpointStore
from runtime.clients import GROUP_CONSUMER_DEFAULTS, PRODUCER_ENFORCED, Clients, patiently
from runtime.group_protocol import consumer_settings_left_out, resolve_group_protocol
from runtime.routing import COPY_PRODUCER_DEFAULTS, AckCallback, Copies, Router, TooLargeRecipe
from runtime.settings import EXACTLY_ONCE, ConsumerSettings, KafkaSettings
from runtime.topics import ensure_stats_topic, ensure_topics, max_message_bytes
from runtime.transactions import TRANSACTION_DEFAULTS, Transactions, resolve_guarantee, transactional_id

CONSUMER_ENFORCED = {"enable.auto.commit": False, "enable.auto.offset.store": False, "isolation.level": "read_committed"}


@dataclass(frozen=True)
class Plan:
    """What a checkpointed consumer reads, where its copies go, and how its clients are tuned."""

    sources: tuple[str, ...]
    targets: tuple[str, ...]
    dead_letter_topic: str
    too_large: TooLargeRecipe  # the headers of a dead letter that stands in for a value too large to copy
    consumer_defaults: Mapping[str, Any] = field(default_factory=lambda: GROUP_CONSUMER_DEFAULTS)
    producer_defaults: Mapping[str, Any] = field(default_factory=lambda: COPY_PRODUCER_DEFAULTS)
    topic_config: Mapping[str, Mapping[str, str]] = field(default_factory=dict)  # of topics it creates
    fresh_from_committed: bool = False  # see CheckpointedConsumer
    settled_only: bool = False  # see CheckpointedConsumer


@dataclass
class Wiring:
    """The clients of a checkpointed consumer, built in ``main()``."""

    settings: ConsumerSettings
    plan: Plan
    clients: Clients
    consumer: Consumer
    checkpointed: CheckpointedConsumer
    guarantee: str  # for the start-up line: "exactly-once (auto: ...)"
    group_protocol: str  # for the start-up line: "consumer (auto: ...)"

    @property
    def copies(self) -> Copies:
        return self.checkpointed.copies

    def start_transactions(self, should_stop: Callable[[], bool]) -> None:
        """With exactly-once: initialise the transactional producer (after subscribing, so the join runs meanwhile);
        a stop request meanwhile leaves it uninitialised, and the shutdown has nothing to commit."""
        if self.checkpointed.transactions is not None:
            self.checkpointed.transactions.begin(should_stop)

    def close(self) -> None:
        """Flush, checkpoint, commit and leave the group (:meth:`CheckpointedConsumer.close`)."""
        self.checkpointed.close()


def copy_producer_config(defaults: Mapping[str, Any],
                         txn_id: Optional[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Defaults and enforced keys of the producer of copies and checkpoints: transactional with ``txn_id``."""
    if txn_id is not None:
        return {**defaults, **TRANSACTION_DEFAULTS}, {**PRODUCER_ENFORCED, "transactional.id": txn_id}
    # Copies wait out a broker outage (the sources pause: Backpressure); a copy that times out could
    # only stop the script, since sending it again might duplicate it.
    return {**defaults, "message.timeout.ms": 0}, dict(PRODUCER_ENFORCED)


def wire(kafka: KafkaSettings, settings: ConsumerSettings, plan: Plan, should_stop: Callable[[], bool]) -> Optional[Wiring]:
    """Create the topics, then the clients, checkpoint store and copies; None if stopped while waiting for the broker."""
    clients = Clients(kafka, settings.group_id)
    topics = list(dict.fromkeys([*plan.sources, *plan.targets]))
    if not (
        ensure_topics(clients, topics, kafka.partitions, kafka.replication_factor, should_stop,
                      topic_config=plan.topic_config)
        and ensure_stats_topic(clients, settings.stats_topic, kafka.replication_factor, should_stop)
    ):
        return None
    txn_id = transactional_id(settings)
    resolved = resolve_guarantee(settings.guarantee, clients, txn_id, should_stop)
    if resolved is None:
        return None
    guarantee, why = resolved
    transactional = guarantee == EXACTLY_ONCE
    protocol = resolve_group_protocol(settings.group_protocol, clients, should_stop, transactional)
    if protocol is None:
        return None
    producer_defaults, producer_enforced = copy_producer_config(plan.producer_defaults, txn_id if transactional else None)
    consumer = clients.consumer(plan.consumer_defaults,
                                {**CONSUMER_ENFORCED, "group.id": settings.group_id, "group.protocol": protocol[0]},
                                without=consumer_settings_left_out(protocol[0], kafka.properties))
    transactions = None
    if transactional:
        transactions = Transactions(lambda on_fatal: clients.producer(producer_defaults, producer_enforced,
                                                                      on_fatal=on_fatal),
                                    consumer.consumer_group_metadata, clients.status, txn_id)
        producer = transactions.producer
    else:
        producer = clients.producer(producer_defaults, producer_enforced, warm_up=[*plan.targets, settings.stats_topic])

    def make_copies(on_acked: AckCallback) -> Copies:
        admin = clients.admin()
        limit = patiently(lambda: max_message_bytes(admin, list(plan.targets)), clients.status,
                          "read the copy topics' max.message.bytes") if transactional else None
        return Router(producer, plan.dead_letter_topic, plan.too_large, on_acked, clients.status,
                      transaction_max_bytes=limit)

    store = CheckpointStore(clients, settings.stats_topic, settings.group_id)
    checkpointed = CheckpointedConsumer(clients, consumer, producer, store, list(plan.targets), make_copies, transactions,
                                        plan.fresh_from_committed, plan.settled_only, settings.commit_interval_s)
    if transactions is not None:
        router = checkpointed.copies
        assert isinstance(router, Router)
        transactions.on_renewed += [checkpointed.use_producer, router.use_producer]
    return Wiring(settings, plan, clients, consumer, checkpointed, f"{guarantee} ({why})",
                  f"{protocol[0]} ({protocol[1]})")
