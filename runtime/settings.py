"""Typed settings of the Kafka runtime, and librdkafka settings from a properties file.

Client settings are layered as Quix Streams does: our defaults, then the
user's properties file (``--config``, the ``client.properties`` convention of
the Kafka CLI tools), then the keys this code must enforce. No setting's value
is ever logged, so secrets stay out of the output. The scripts build these
objects from their flags (:mod:`app.settings`); nothing here reads flags.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

from runtime.errors import ConfigError

DEFAULT_BOOTSTRAP = "localhost:9092"
AUTO = "auto"
EXACTLY_ONCE = "exactly-once"
AT_LEAST_ONCE = "at-least-once"
GUARANTEES = (AUTO, EXACTLY_ONCE, AT_LEAST_ONCE)
CLASSIC = "classic"
CONSUMER = "consumer"  # KIP-848: the broker assigns partitions; no stop-the-world rebalances
GROUP_PROTOCOLS = (AUTO, CLASSIC, CONSUMER)
# Copies not yet acknowledged before the sources pause: bounds the memory they hold (runtime.backpressure).
MAX_COPIES_IN_FLIGHT = 20_000
# How often checkpoints and offsets commit (with exactly-once: the transaction); docs/performance.md has the curve.
COMMIT_INTERVAL_MS = 1000


@dataclass(frozen=True)
class KafkaSettings:
    """Where the cluster is, how to reach it, and how topics this script creates are made."""

    bootstrap_servers: str = DEFAULT_BOOTSTRAP
    properties: Mapping[str, str] = field(default_factory=dict)
    partitions: int = 3
    replication_factor: int = -1  # the broker's default

    @classmethod
    def load(cls, bootstrap_servers: Optional[str], properties_file: Optional[str], **topic_creation: int) -> "KafkaSettings":
        """Bootstrap servers as given, else from the properties file, else localhost:9092."""
        properties = load_properties(properties_file)
        return cls(bootstrap_servers or properties.get("bootstrap.servers") or DEFAULT_BOOTSTRAP, properties,
                   **topic_creation)

    def client_config(self, defaults: Mapping[str, Any], enforced: Mapping[str, Any]) -> dict[str, Any]:
        """defaults < properties file < enforced keys; bootstrap servers from the resolved value."""
        settings: dict[str, Any] = dict(defaults)
        settings.update(self.properties)
        settings.update(enforced)
        settings["bootstrap.servers"] = self.bootstrap_servers
        return settings


@dataclass(frozen=True)
class ConsumerSettings:
    """A checkpointed consumer: its group, where its checkpoints live, its delivery guarantee."""

    group_id: str
    stats_topic: str = "orders_stats"
    guarantee: str = AUTO
    transactional_id: str = ""  # empty: GROUP-HOST-PID
    batch_size: int = 5000
    max_copies_in_flight: int = MAX_COPIES_IN_FLIGHT  # see runtime.backpressure
    group_protocol: str = AUTO
    commit_interval_s: float = COMMIT_INTERVAL_MS / 1000


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
