"""The scripts' flags, with environment-variable defaults, and the typed settings built from them in one place.

Every script calls the ``add_*`` functions it needs, then builds its
settings with the matching functions below; nothing under the scripts sees
the ``argparse.Namespace``. Librdkafka settings (security, SASL, TLS) come
from the ``--config`` properties file (:class:`runtime.settings.KafkaSettings`).
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass

from domain.backoff import BackoffPolicy
from domain.codecs import CODECS, Codec
from domain.failures import FailureSimulator
from runtime.settings import (
    AUTO, COMMIT_INTERVAL_MS, DEFAULT_BOOTSTRAP, GROUP_PROTOCOLS, GUARANTEES, MAX_COPIES_IN_FLIGHT, ConsumerSettings, KafkaSettings,
)


def env(name: str, fallback: str) -> str:
    """An environment variable's value, or ``fallback`` when unset or empty."""
    return os.environ.get(name) or fallback


@dataclass(frozen=True)
class Topics:
    """The pipeline's topics: ``orders`` is read by anyone; the others belong to this pipeline."""

    orders: str = "orders"
    retry: str = "orders_retry"
    redrive: str = "orders_redrive"
    dlq: str = "orders_dlq"


@dataclass(frozen=True)
class Retries:
    """How many retries, and the backoff between them."""

    max_retries: int
    backoff: BackoffPolicy


def positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text}")
    return value


def non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text}")
    return value


def probability(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def add_connection_args(parser: argparse.ArgumentParser) -> None:
    """Flags every script shares: broker, properties file, topics, log level."""
    group = parser.add_argument_group("Kafka connection")
    group.add_argument(
        "--bootstrap-servers", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS"),
        help="broker list (env KAFKA_BOOTSTRAP_SERVERS, else bootstrap.servers from --config, else %s)"
        % DEFAULT_BOOTSTRAP,
    )
    group.add_argument(
        "--config", metavar="PATH", default=os.environ.get("KAFKA_CONFIG_FILE"),
        help="librdkafka settings as a Java-style properties file, e.g. security.protocol, sasl.*, ssl.* "
        "(env KAFKA_CONFIG_FILE)",
    )
    topics = parser.add_argument_group("topics")
    topics.add_argument("--orders-topic", default=env("ORDERS_TOPIC", "orders"), help="(env ORDERS_TOPIC) %(default)s")
    topics.add_argument("--retry-topic", default=env("RETRY_TOPIC", "orders_retry"), help="(env RETRY_TOPIC) %(default)s")
    topics.add_argument(
        "--redrive-topic", default=env("REDRIVE_TOPIC", "orders_redrive"),
        help="due retries and replayed dead letters, read by this pipeline's main consumer group only, never "
        "written to the orders topic (env REDRIVE_TOPIC) %(default)s",
    )
    topics.add_argument("--dlq-topic", default=env("DLQ_TOPIC", "orders_dlq"), help="(env DLQ_TOPIC) %(default)s")
    topics.add_argument(
        "--partitions", type=positive_int, default=env("TOPIC_PARTITIONS", "3"),
        help="partitions of topics this script creates (env TOPIC_PARTITIONS) %(default)s",
    )
    topics.add_argument(
        "--replication-factor", type=int, default=env("TOPIC_REPLICATION_FACTOR", "-1"),
        help="replication factor of topics this script creates; -1 = the broker's default "
        "(env TOPIC_REPLICATION_FACTOR) %(default)s",
    )
    parser.add_argument(
        "--log-level", default=env("LOG_LEVEL", "INFO"), choices=["DEBUG", "INFO", "WARNING", "ERROR"], type=str.upper,
        help="(env LOG_LEVEL) %(default)s",
    )


def kafka_settings(args: argparse.Namespace) -> KafkaSettings:
    return KafkaSettings.load(args.bootstrap_servers, args.config, partitions=args.partitions,
                              replication_factor=args.replication_factor)


def topics(args: argparse.Namespace) -> Topics:
    return Topics(args.orders_topic, args.retry_topic, args.redrive_topic, args.dlq_topic)


def add_stats_topic_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--stats-topic", default=env("STATS_TOPIC", "orders_stats"),
        help="compacted topic holding the consumers' checkpoints (env STATS_TOPIC) %(default)s",
    )


def add_consumer_args(parser: argparse.ArgumentParser, group_env: str, group_default: str) -> None:
    """A checkpointed consumer's group, checkpoint topic, batch size and delivery guarantee."""
    parser.add_argument("--group-id", default=env(group_env, group_default), help=f"(env {group_env}) %(default)s")
    parser.add_argument("--batch-size", type=positive_int, default=env("BATCH_SIZE", "5000"), help="%(default)s")
    parser.add_argument(
        "--max-copies-in-flight", type=positive_int, default=env("MAX_COPIES_IN_FLIGHT", str(MAX_COPIES_IN_FLIGHT)),
        help="copies waiting for the broker's acknowledgement before consumption pauses: bounds their memory "
        "while the broker cannot take them (env MAX_COPIES_IN_FLIGHT) %(default)s",
    )
    parser.add_argument(
        "--group-protocol", choices=GROUP_PROTOCOLS, default=env("GROUP_PROTOCOL", AUTO),
        help="consumer: KIP-848's protocol, the broker assigns partitions and a joining member stops no other; "
        "classic: the protocol every broker has; auto: consumer where the broker offers it (env GROUP_PROTOCOL) "
        "%(default)s",
    )
    parser.add_argument(
        "--commit-interval-ms", type=positive_int, default=env("COMMIT_INTERVAL_MS", str(COMMIT_INTERVAL_MS)),
        help="how often checkpoints and offsets commit, with exactly-once the transaction: shorter makes copies "
        "visible to read_committed readers sooner, and costs throughput (env COMMIT_INTERVAL_MS) %(default)s",
    )
    add_stats_topic_arg(parser)
    group = parser.add_argument_group("delivery guarantee")
    group.add_argument(
        "--guarantee", choices=GUARANTEES, default=env("GUARANTEE", AUTO),
        help="exactly-once: Kafka transactions (a stalled member is fenced); at-least-once: idempotent "
        "producer and copy scan, for brokers without sound transactions; auto: exactly-once if the broker has a "
        "transaction coordinator (env GUARANTEE) %(default)s",
    )
    group.add_argument(
        "--transactional-id", default=env("TRANSACTIONAL_ID", ""),
        help="with exactly-once: this instance's transactional.id; give each instance a stable one (its pod or "
        "host name) so that a restart fences its previous incarnation at once (env TRANSACTIONAL_ID) "
        "default: GROUP-HOST-PID",
    )


def consumer_settings(args: argparse.Namespace) -> ConsumerSettings:
    return ConsumerSettings(args.group_id, args.stats_topic, args.guarantee, args.transactional_id, args.batch_size,
                            args.max_copies_in_flight, args.group_protocol, args.commit_interval_ms / 1000)


def add_backoff_args(parser: argparse.ArgumentParser) -> None:
    """The retry schedule; the main consumer stamps it on each retry, the retry consumer enforces it."""
    group = parser.add_argument_group("retries: how many, and the backoff (exponential, with jitter)")
    group.add_argument(
        "--max-retries", type=non_negative_int, default=env("MAX_RETRIES", "3"),
        help="retries after the first attempt before a record goes to the DLQ; the retry consumer enforces it, "
        "the main consumer names it in its log (env MAX_RETRIES) %(default)s",
    )
    group.add_argument(
        "--backoff-base", type=non_negative_float, default=env("RETRY_BACKOFF_BASE_S", "1.0"),
        help="delay after the first failure, seconds (env RETRY_BACKOFF_BASE_S) %(default)s",
    )
    group.add_argument(
        "--backoff-factor", type=float, default=env("RETRY_BACKOFF_FACTOR", "2.0"),
        help="growth per further failure (env RETRY_BACKOFF_FACTOR) %(default)s",
    )
    group.add_argument(
        "--backoff-max", type=non_negative_float, default=env("RETRY_BACKOFF_MAX_S", "4.0"),
        help="cap on the delay, seconds (env RETRY_BACKOFF_MAX_S) %(default)s",
    )
    group.add_argument(
        "--backoff-jitter", type=probability, default=env("RETRY_BACKOFF_JITTER", "0.1"),
        help="extra random share of the delay, 0-1 (env RETRY_BACKOFF_JITTER) %(default)s",
    )


def retries(args: argparse.Namespace) -> Retries:
    return Retries(args.max_retries,
                   BackoffPolicy(args.backoff_base, args.backoff_factor, args.backoff_max, args.backoff_jitter))


def add_format_arg(
    parser: argparse.ArgumentParser, what: str = "encoding of the orders' values; producer and consumers must agree",
) -> None:
    parser.add_argument(
        "--format", choices=sorted(CODECS), default=env("MESSAGE_FORMAT", "avro"), dest="message_format",
        help=f"{what} (env MESSAGE_FORMAT) %(default)s",
    )


def codec(args: argparse.Namespace) -> Codec:
    return CODECS[args.message_format]


def add_failure_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("simulated failures, for demos and tests")
    group.add_argument("--fail-rate", type=probability, default=env("FAIL_RATE", "0"),
                       help="the chance that one processing attempt fails transiently; 0 = none (env FAIL_RATE) %(default)s")
    group.add_argument("--fail-product", default=env("FAIL_PRODUCT", "") or None,
                       help="every attempt for this product fails, so it ends in the DLQ (env FAIL_PRODUCT)")
    group.add_argument("--seed", type=int, default=env("FAIL_SEED", "0"),
                       help="seed of the failure schedule (env FAIL_SEED) %(default)s")


def failure_simulator(args: argparse.Namespace) -> FailureSimulator:
    return FailureSimulator(args.fail_rate, args.fail_product, args.seed)


def add_metrics_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("metrics")
    group.add_argument("--metrics-port", type=int, default=env("METRICS_PORT", "") or None,
                       help="serve Prometheus metrics on this port (env METRICS_PORT; off unless given)")
    group.add_argument("--metrics-addr", default=env("METRICS_ADDR", "127.0.0.1"),
                       help="address to serve metrics on (env METRICS_ADDR) %(default)s; 0.0.0.0 for Prometheus in Docker")
