"""Wiring of a checkpointed consumer script: topics, clients, the delivery guarantee, the router.

Built in each script's ``main()``, never at import. With exactly-once (chosen
by ``--guarantee``), one transactional producer makes the copies and the
checkpoints; with at-least-once the main consumer's copies are made by a
:class:`RoutingWorker` process, the retry consumer's by its own producer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, Union

from confluent_kafka import Consumer

from pipeline.checkpointed import CheckpointedConsumer
from pipeline.checkpoints import CheckpointStore
from pipeline.clients import RETRY_TOPIC_CONFIG, Clients, ensure_stats_topic, ensure_topics, max_message_bytes
from pipeline.config import ClientSettings
from pipeline.routing import Router
from pipeline.routing_worker import RoutingWorker
from pipeline.transactions import EXACTLY_ONCE, TRANSACTION_DEFAULTS, Transactions, resolve_guarantee, transactional_id

PRODUCER_ENFORCED = {"enable.idempotence": True, "acks": "all"}
CONSUMER_ENFORCED = {"enable.auto.commit": False, "enable.auto.offset.store": False, "isolation.level": "read_committed"}


@dataclass
class Wiring:
    """The clients of a checkpointed consumer script, built in ``main()``."""

    clients: Clients
    consumer: Consumer
    checkpointed: CheckpointedConsumer
    router: Union[Router, RoutingWorker]
    guarantee: str  # for the start-up line: "exactly-once (auto: ...)"

    def close(self) -> None:
        """Checkpoint and leave the group (:meth:`CheckpointedConsumer.close`), then stop a routing worker."""
        try:
            self.checkpointed.close()
        finally:
            if isinstance(self.router, RoutingWorker):
                self.router.close()


def wire(
    args: Any,
    should_stop: Callable[[], bool],
    consumer_defaults: dict[str, Any],
    producer_defaults: dict[str, Any],
    target_topics: list[str],
    route_in_child: bool = False,
) -> Optional[Wiring]:
    """Create the topics, then the clients, checkpoint store and router; None if stopped while waiting for the broker.

    With exactly-once (``args.guarantee``), one transactional producer makes
    the copies and the checkpoints. Else ``route_in_child`` has copies made
    by a :class:`RoutingWorker` process (the main consumer, whose thread is
    the bottleneck at high failure rates).
    """
    clients = Clients(ClientSettings(args), args.group_id)
    topics = [args.orders_topic, args.redrive_topic, args.retry_topic, args.dlq_topic]
    if not (
        ensure_topics(clients, topics, args.partitions, args.replication_factor, should_stop,
                      topic_config={args.retry_topic: RETRY_TOPIC_CONFIG})
        and ensure_stats_topic(clients, args.stats_topic, args.replication_factor, should_stop)
    ):
        return None
    guarantee, why = resolve_guarantee(args.guarantee, clients.admin())
    transactional = guarantee == EXACTLY_ONCE
    route_in_child = route_in_child and not transactional
    producer_topics = [args.stats_topic] if route_in_child else [*target_topics, args.stats_topic]
    if transactional:
        producer_defaults = {**producer_defaults, **TRANSACTION_DEFAULTS}
        producer_enforced = {**PRODUCER_ENFORCED, "transactional.id": transactional_id(args)}
    else:
        # Copies wait out a broker outage (the sources pause, see throttle()); a copy that times out could
        # only stop the script, since sending it again might duplicate it.
        producer_defaults = {**producer_defaults, "message.timeout.ms": 0}
        producer_enforced = PRODUCER_ENFORCED
    consumer = clients.consumer(consumer_defaults, {**CONSUMER_ENFORCED, "group.id": args.group_id})
    transactions = None
    if transactional:
        transactions = Transactions(lambda: clients.producer(producer_defaults, producer_enforced),
                                    consumer.consumer_group_metadata)
        producer = transactions.producer
    else:
        producer = clients.producer(producer_defaults, producer_enforced, warm_up=producer_topics)
    store = CheckpointStore(clients, args.stats_topic, args.group_id)
    checkpointed = CheckpointedConsumer(clients, consumer, producer, store, target_topics, transactions)
    router: Union[Router, RoutingWorker]
    if route_in_child:
        router = checkpointed.copies = RoutingWorker(args, producer_defaults, PRODUCER_ENFORCED, checkpointed.acked)
    else:
        router = Router(producer, args.retry_topic, args.dlq_topic, checkpointed.acked,
                        transaction_max_bytes=max_message_bytes(clients.admin(), target_topics) if transactional else None)
    if transactions is not None:
        transactions.on_renewed += [checkpointed.use_producer, router.use_producer]
    return Wiring(clients, consumer, checkpointed, router, f"{guarantee} ({why})")
