"""Command-line flags with environment defaults, and librdkafka settings from a properties file.

Client settings are layered as Quix Streams does: our defaults, then the
user's properties file (``--config`` / ``KAFKA_CONFIG_FILE``, the
``client.properties`` convention of the Kafka CLI tools), then the keys this
code must enforce. No setting's value is ever logged, so secrets stay out of the output.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any, Mapping, Optional

from pipeline.errors import ConfigError

DEFAULT_BOOTSTRAP = "localhost:9092"


def env(name: str, fallback: str) -> str:
    """An environment variable's value, or ``fallback`` when unset or empty."""
    return os.environ.get(name) or fallback


def parse_properties(text: str, source: str = "properties") -> dict[str, str]:
    """Parse Java-style ``key=value`` / ``key: value`` lines; ``#`` and ``!`` start comments."""
    result: dict[str, str] = {}
    logical = ""
    lines = text.splitlines()
    for number, raw in enumerate(lines, start=1):
        line = raw.strip() if not logical else raw.lstrip()
        if not logical and (not line or line[0] in "#!"):
            continue
        if line.endswith("\\") and not line.endswith("\\\\"):
            logical += line[:-1]
            if number < len(lines):
                continue
        else:
            logical += line
        separator = min((i for i in (logical.find("="), logical.find(":")) if i >= 0), default=-1)
        if separator < 0:
            raise ConfigError(f"{source}:{number}: expected key=value, got {logical.split()[0]!r}")
        key, value = logical[:separator].strip(), logical[separator + 1 :].strip()
        if not key:
            raise ConfigError(f"{source}:{number}: empty key")
        result[key] = value
        logical = ""
    return result


def load_properties(path: Optional[str]) -> dict[str, str]:
    if not path:
        return {}
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read client properties file {path}: {exc.strerror}") from exc
    return parse_properties(text, source=path)


def add_connection_args(parser: argparse.ArgumentParser) -> None:
    """Flags every script shares: broker, properties file, topics, log level."""
    group = parser.add_argument_group("Kafka connection")
    group.add_argument(
        "--bootstrap-servers",
        default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS"),
        help="broker list (env KAFKA_BOOTSTRAP_SERVERS, else bootstrap.servers from --config, else %s)"
        % DEFAULT_BOOTSTRAP,
    )
    group.add_argument(
        "--config",
        metavar="PATH",
        default=os.environ.get("KAFKA_CONFIG_FILE"),
        help="librdkafka settings as a Java-style properties file, e.g. security.protocol, sasl.*, ssl.* "
        "(env KAFKA_CONFIG_FILE)",
    )
    topics = parser.add_argument_group("topics")
    topics.add_argument("--orders-topic", default=env("ORDERS_TOPIC", "orders"), help="(env ORDERS_TOPIC) %(default)s")
    topics.add_argument(
        "--retry-topic", default=env("RETRY_TOPIC", "orders_retry"), help="(env RETRY_TOPIC) %(default)s"
    )
    topics.add_argument(
        "--redrive-topic", default=env("REDRIVE_TOPIC", "orders_redrive"),
        help="due retries and replayed dead letters, read by this pipeline's main consumer group only, never "
        "written to the orders topic (env REDRIVE_TOPIC) %(default)s",
    )
    topics.add_argument("--dlq-topic", default=env("DLQ_TOPIC", "orders_dlq"), help="(env DLQ_TOPIC) %(default)s")
    topics.add_argument(
        "--partitions",
        type=positive_int,
        default=env("TOPIC_PARTITIONS", "3"),
        help="partitions of topics this script creates (env TOPIC_PARTITIONS) %(default)s",
    )
    topics.add_argument(
        "--replication-factor",
        type=int,
        default=env("TOPIC_REPLICATION_FACTOR", "-1"),
        help="replication factor of topics this script creates; -1 = the broker's default "
        "(env TOPIC_REPLICATION_FACTOR) %(default)s",
    )
    parser.add_argument(
        "--log-level",
        default=env("LOG_LEVEL", "INFO"),
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        type=str.upper,
        help="(env LOG_LEVEL) %(default)s",
    )


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


class ClientSettings:
    """The user's connection settings, resolved once per script."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.properties = load_properties(args.config)
        self.bootstrap_servers: str = (
            args.bootstrap_servers or self.properties.get("bootstrap.servers") or DEFAULT_BOOTSTRAP
        )

    def build(self, defaults: Mapping[str, Any], enforced: Mapping[str, Any]) -> dict[str, Any]:
        """defaults < properties file < enforced keys; bootstrap servers from the resolved value."""
        settings: dict[str, Any] = dict(defaults)
        settings.update(self.properties)
        settings.update(enforced)
        settings["bootstrap.servers"] = self.bootstrap_servers
        return settings


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


def add_stats_topic_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--stats-topic", default=env("STATS_TOPIC", "orders_stats"),
        help="compacted topic holding the consumers' checkpoints (env STATS_TOPIC) %(default)s",
    )
