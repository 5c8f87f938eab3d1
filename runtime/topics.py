"""Topics the scripts create and the settings they rely on: created once the broker is there, checked before use."""

from __future__ import annotations

import logging
from typing import Callable, Iterable, Mapping, Optional

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from runtime.access import AccessDenied, is_refusal
from runtime.clients import Clients, wait_unless_stopped
from runtime.errors import ConfigError

log = logging.getLogger(__name__)

KAFKA_DEFAULT_MAX_MESSAGE_BYTES = 1_048_588


def ensure_topics(
    clients: Clients,
    topics: Iterable[str],
    partitions: int,
    replication_factor: int,
    should_stop: Callable[[], bool] = lambda: False,
    topic_config: Optional[Mapping[str, Mapping[str, str]]] = None,
    retry_interval_s: float = 2.0,
) -> bool:
    """Create the topics that do not exist yet, waiting for the broker as long as it takes.

    Returns False if asked to stop before the topics were there. Existing
    topics are left as they are (whatever their partition count).
    """
    wanted = list(dict.fromkeys(topics))
    admin = clients.admin()
    while not should_stop():
        try:
            existing = set(admin.list_topics(timeout=5).topics)
        except KafkaException as exc:
            admin.poll(0)  # serves the error callback, which knows why (an admin client has no loop of its own)
            clients.status.check()
            clients.status.unreachable(exc.args[0].str())
            wait_unless_stopped(retry_interval_s, should_stop)
            continue
        clients.status.reachable()
        missing = [topic for topic in wanted if topic not in existing]
        if not missing:
            return True
        futures = admin.create_topics(
            [
                NewTopic(topic, partitions, replication_factor, config=dict((topic_config or {}).get(topic, {})))
                for topic in missing
            ],
            request_timeout=15,
        )
        for topic, future in futures.items():
            try:
                future.result()
                log.info("Created topic %s (%d partitions)", topic, partitions)
            except KafkaException as exc:
                error = exc.args[0]
                if error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                    continue
                if is_refusal(error):
                    raise AccessDenied(
                        f"{clients.status.principal} may not create topic {topic} ({error.str()}): have the cluster's "
                        f"admins create it (or grant Create on Topic {topic}); docs/security.md lists every topic"
                    ) from None
                if not error.retriable():
                    raise ConfigError(f"cannot create topic {topic}: {error.str()}") from None
                log.warning("Could not create topic %s: %s; retrying", topic, error.str())
                wait_unless_stopped(retry_interval_s, should_stop)
    return False


# The retry consumer bounds each due time by the record's timestamp: the broker's clock, not
# the stamping host's (brokers that ignore the setting keep the producer's time).
RETRY_TOPIC_CONFIG = {"message.timestamp.type": "LogAppendTime"}

# Compacted, so a take-over reads about one checkpoint per key, not the topic's history; segments
# roll every 10 minutes because the log cleaner never compacts the active one (default: 7 days).
STATS_TOPIC_CONFIG = {"cleanup.policy": "compact", "segment.ms": "600000"}


def ensure_stats_topic(
    clients: Clients, topic: str, replication_factor: int, should_stop: Callable[[], bool] = lambda: False
) -> bool:
    """The compacted checkpoint topic: one partition, so one read gives every key's latest record."""
    ready = ensure_topics(clients, [topic], 1, replication_factor, should_stop, topic_config={topic: STATS_TOPIC_CONFIG})
    if ready:
        require_compacted(clients.admin(), topic)
    return ready


def require_compacted(admin: AdminClient, topic: str) -> None:
    """Refuse a stats topic that is not compacted: retention would delete live checkpoints, and every
    take-over would read the topic's whole history."""
    try:
        policy = topic_settings(admin, [topic], "cleanup.policy")[topic] or "delete"
    except KafkaException as exc:
        log.warning("Cannot check that %s is compacted (%s); make sure it is", topic, exc.args[0].str())
        return
    if "compact" not in policy.split(","):
        raise ConfigError(
            f"the stats topic {topic} has cleanup.policy={policy}; checkpoints need a compacted topic "
            f"(kafka-configs.sh --alter --entity-type topics --entity-name {topic} --add-config cleanup.policy=compact)"
        )


def max_message_bytes(admin: AdminClient, topics: list[str]) -> int:
    """The smallest ``max.message.bytes`` of ``topics``: the largest record batch the broker stores there."""
    limits = topic_settings(admin, topics, "max.message.bytes").values()
    return min(int(limit) if limit else KAFKA_DEFAULT_MAX_MESSAGE_BYTES for limit in limits)


def topic_settings(admin: AdminClient, topics: list[str], name: str) -> dict[str, Optional[str]]:
    """One setting of each topic, as the broker describes it; None where it reports none."""
    resources = [ConfigResource(ConfigResource.Type.TOPIC, topic) for topic in topics]
    settings: dict[str, Optional[str]] = {}
    for resource, future in admin.describe_configs(resources, request_timeout=15).items():
        entry = future.result().get(name)  # bounded by the request timeout: a KafkaException, never a hang
        settings[resource.name] = entry.value if entry is not None and entry.value else None
    return settings
