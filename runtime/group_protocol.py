"""Which consumer group protocol a checkpointed consumer joins with: KIP-848's wherever the broker offers it and
the consumer runs at-least-once; classic with exactly-once.

With exactly-once the classic protocol's generations fence a stale member's
transactional offset commits: on a three-node Apache Kafka 4.1 cluster, under
the consumer protocol (librdkafka 2.16), a joining member was handed a
partition while its previous owner still processed it, and both committed.

Under the consumer protocol (KIP-848, Apache Kafka 4) the broker computes the
assignment and hands each member what to give up and what to take at its next
heartbeat: a joining member stops no other, and gets its partitions within a
heartbeat or two. Session and heartbeat timings are then the broker's
(``group.consumer.*``), and librdkafka refuses the classic protocol's keys, so
they are left out of the consumer's settings, with a line saying so.
"""

from __future__ import annotations

import logging
from typing import Callable, Mapping, Optional

from confluent_kafka import KafkaException

from runtime.access import is_refusal
from runtime.clients import Clients, patiently
from runtime.settings import AUTO, CLASSIC, CONSUMER

log = logging.getLogger(__name__)

CLASSIC_ONLY = ("session.timeout.ms", "heartbeat.interval.ms", "partition.assignment.strategy", "group.protocol.type")
# An Apache Kafka 4 broker lists the protocols its group coordinator serves here ("classic,consumer").
_PROTOCOLS_SETTING = "group.coordinator.rebalance.protocols"


def resolve_group_protocol(choice: str, clients: Clients, should_stop: Callable[[], bool] = lambda: False,
                           transactional: bool = False) -> Optional[tuple[str, str]]:
    """The group protocol to join with, and why (for the start-up line); None if asked to stop meanwhile."""
    if choice != AUTO:
        return choice, "asked for"
    if transactional:
        return CLASSIC, "auto: with exactly-once, whose commits the classic protocol's generations fence"
    try:
        settings = patiently(clients.broker_settings, clients.status, "read the broker's settings", should_stop)
    except KafkaException as exc:
        if not is_refusal(exc.args[0]):
            raise
        return CLASSIC, "auto: reading the broker's settings needs DescribeConfigs on the cluster"
    if settings is None:
        return None
    if CONSUMER in (settings.get(_PROTOCOLS_SETTING) or "").split(","):
        return CONSUMER, "auto: the broker offers KIP-848's consumer protocol"
    return CLASSIC, "auto: the broker offers the classic protocol only"


def consumer_settings_left_out(protocol: str, properties: Mapping[str, str]) -> tuple[str, ...]:
    """The keys to leave out of a consumer's settings under ``protocol``; says which of the user's file are ignored."""
    if protocol != CONSUMER:
        return ()
    ignored = [key for key in CLASSIC_ONLY if key in properties]
    if ignored:
        log.info("Group protocol consumer: %s of the properties file apply to the classic protocol only; the "
                 "broker's group.consumer.* settings time sessions and heartbeats", ", ".join(ignored))
    return CLASSIC_ONLY
